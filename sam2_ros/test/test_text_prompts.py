"""The text prompt in force: a pass on the newest frame, the next after text_period_s on a new one, none cleared."""
import time

import pytest
from detectors import save_grounding_dino

from conftest import photo
from sam2_ros.core import settings as S
from sam2_ros.core.frames import RecentFrame
from sam2_ros.core.text import DetectorSpec, load_detector
from sam2_ros.core.text_prompts import TextPrompts


@pytest.fixture(scope="module")
def prompts_and_frame(tmp_path_factory):
    folder = save_grounding_dino(tmp_path_factory.mktemp("gd") / "gd")
    image = photo("coffee")[:, :, :3].copy()
    frame = RecentFrame(1, 1, None, image, None, 0)
    return (lambda: TextPrompts(lambda: load_detector(DetectorSpec(str(folder), "cpu")))), frame


def run_pass(prompts, frame, config):
    for _ in range(20_000):
        done = prompts.step(frame, config, config.text.slice_ms / 1e3)
        if done is not None:
            return done
        time.sleep(0.001)  # the detector loads on a thread of its own first
    raise AssertionError("no pass ended")


def test_a_pass_ends_with_boxes_in_the_frames_pixels_and_the_next_waits_for_the_period(prompts_and_frame):
    make, frame = prompts_and_frame
    config = S.NodeConfig().changed(text_box_threshold=0.3, text_period_s=3600.0, text_slice_ms=1000.0)
    prompts = make()
    assert prompts.step(frame, config, 1.0) is None, "no text prompt: no pass"
    prompts.set(("cup",))
    found, hw, ms = run_pass(prompts, frame, config)
    assert hw == (400, 600) and found and ms > 0  # the coffee photo is 600 x 400
    assert all(f.phrase == "cup" for f in found)
    assert prompts.step(frame, config, 1.0) is None, "an hour has not passed"
    prompts.set(("cup", "red ball"))  # a new prompt: due at once
    assert run_pass(prompts, frame, config) is not None


def test_a_cleared_prompt_starts_no_pass(prompts_and_frame):
    make, frame = prompts_and_frame
    config = S.NodeConfig().changed(text_box_threshold=0.3, text_period_s=0.0)
    prompts = make()
    prompts.set(("cup",))
    prompts.clear()
    assert prompts.phrases == () and prompts.step(frame, config, 1.0) is None


def test_a_periodic_pass_waits_for_a_frame_no_pass_started_on_and_wants_time_says_when_one_could_run(
        prompts_and_frame):
    make, frame = prompts_and_frame
    config = S.NodeConfig().changed(text_box_threshold=0.3, text_period_s=0.001)
    prompts = make()
    assert not prompts.wants_time(frame, config), "no text prompt"
    prompts.set(("cup",))
    run_pass(prompts, frame, config)
    time.sleep(0.01)  # the period is over
    assert not prompts.wants_time(frame, config) and prompts.step(frame, config, 1.0) is None, "the same frame"
    assert not prompts.wants_time(None, config), "no frame yet"
    newer = RecentFrame(2, 2, None, frame.rgb, None, 0)
    assert prompts.wants_time(newer, config)
    assert prompts.step(newer, config, 0.0) is None and prompts.wants_time(newer, config), "one operation: in flight"
    prompts.stop()  # a failed pass is not tried again on its frame
    assert not prompts.wants_time(newer, config)
    prompts.set(("cup", "red ball"))  # a new prompt runs on the newest frame, seen or not
    assert prompts.wants_time(newer, config)
