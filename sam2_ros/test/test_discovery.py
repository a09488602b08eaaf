"""Discovery: segment-everything passes spread over camera frames, due by the clock, bounded by room."""
import numpy as np
import pytest
from test_session import config

import sam2_ros.core.discovery as discovery
from conftest import photo
from sam2_ros.core.discovery import Discovery, resized
from sam2_ros.core.encoding import encode, for_prompts
from sam2_ros.core.frames import RecentFrame

# 4 x 4 grid points in batches of 4: a pass is 4 point batches
PASS = dict(everything_points_per_side=4, everything_points_per_batch=4, discover_min_area=100_000_000)


@pytest.fixture(scope="module")
def frame(small_model) -> RecentFrame:
    image = photo("coffee")
    return RecentFrame(1, 1, "header", image, for_prompts(small_model, encode(small_model, image)), 0)


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [12.0]  # seconds since the machine booted: a robot starts the node at boot
    monkeypatch.setattr(discovery.time, "monotonic", lambda: now[0])
    return now


def test_the_first_pass_starts_at_once_even_just_after_the_machine_booted(small_model, frame, clock):
    """The monotonic clock reads seconds after boot, far below an hour's period: the first pass is due all the same."""
    finder = Discovery(small_model)
    settings = config(discover_period_s=3600.0, discover_batches_per_frame=100, **PASS)
    assert finder.step(frame, settings, room=1) is not None, "the first pass ran at the first frame"
    clock[0] += 3599.0
    assert finder.step(frame, settings, room=1) is None, "the period is not over yet"
    clock[0] += 1.0
    assert finder.step(frame, settings, room=1) is not None, "an hour after the first pass ended"


def test_a_pass_of_four_batches_ends_on_the_second_frame_at_three_batches_a_frame(small_model, frame, clock):
    finder = Discovery(small_model)
    settings = config(discover_period_s=1.0, discover_batches_per_frame=3, **PASS)
    assert finder.step(frame, settings, room=1) is None  # batches 1-3
    proposals, ms = finder.step(frame, settings, room=1)  # batch 4: the pass ends
    assert proposals == [] and ms > 0, "min_area above the image's size: nothing proposed"


def test_no_pass_starts_without_room_and_forget_drops_the_pass_in_flight(small_model, frame, clock):
    finder = Discovery(small_model)
    settings = config(discover_period_s=1.0, discover_batches_per_frame=1, **PASS)
    assert finder.step(frame, settings, room=0) is None
    assert finder.step(frame, settings, room=1) is None  # a pass started: batch 1 of 4
    finder.forget()
    for _ in range(3):  # a new pass starts (forget is no pass's end: it is due at once), batches 1-3 of 4
        assert finder.step(frame, settings, room=1) is None
    assert finder.step(frame, settings, room=1) is not None


def test_a_mask_resized_to_another_frame_stays_binary_nearest_neighbour():
    mask = np.array([[1, 0], [0, 1]], bool)
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool)  # each pixel doubled
    np.testing.assert_array_equal(resized(mask, (4, 4)), expected)
    assert resized(mask, (2, 2)) is mask
