"""Time-valued parameters set on a running node, through the parameter service, in their own units."""
import threading
import time

import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from conftest import photo, slow_frames
from rosharness import NODE, Running, add, box_prompt, detection, detections, header, wait_until


def set_double(running, name: str, value: float) -> None:
    """As `ros2 param set` does it: the node's set_parameters service."""
    request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE, double_value=value))])
    (answer,) = running.peer.call(SetParameters, f"{NODE}/set_parameters", request).results
    assert answer.successful, answer.reason


@pytest.fixture
def running(checkpoint):
    harness = Running(checkpoint, mode="image")  # image mode: a prompt applies to the frame it names
    yield harness
    harness.close()


def test_prompt_max_age_s_in_seconds_accepts_a_prompt_one_frame_old_and_refuses_an_older_one(running):
    for second in (10, 11, 12):  # frames one second apart; the newest is 12 s
        running.peer.publish_rgb(photo("coffee"), header(second))
        running.peer.result_for(header(second))
    set_double(running, "prompt_max_age_s", 1.5)
    one_frame_old = add(running, box_prompt([10, 10, 200, 200], header(11)))
    assert one_frame_old.success, one_frame_old.message
    two_frames_old = add(running, box_prompt([10, 10, 200, 200], header(10)))
    assert not two_frames_old.success and "prompt_max_age_s" in two_frames_old.message
    set_double(running, "prompt_max_age_s", 2.5)  # in seconds: 2 s old is now within
    assert add(running, box_prompt([10, 10, 200, 200], header(10))).success


def test_request_timeout_s_in_seconds_cancels_a_request_the_worker_does_not_start_in_time(checkpoint, monkeypatch):
    running = Running(checkpoint)  # track mode: slow_frames slows the tracker
    try:
        running.peer.publish_rgb(photo("coffee"), header(30))
        running.peer.result_for(header(30))
        set_double(running, "request_timeout_s", 0.5)
        busy = slow_frames(monkeypatch, 3.0)  # the worker is on one frame for 3 s
        running.peer.publish_rgb(photo("coffee"), header(31))
        wait_until(busy.is_set, 30, "a frame in flight")
        answer = add(running, box_prompt([10, 10, 200, 200]))
        assert not answer.success and "within 0.5 s" in answer.message
        running.peer.result_for(header(31))
        set_double(running, "request_timeout_s", 10.0)  # now a 3 s wait is within it
        busy.clear()
        running.peer.publish_rgb(photo("coffee"), header(32))
        wait_until(busy.is_set, 30, "a frame in flight")
        assert add(running, box_prompt([10, 10, 200, 200])).success
    finally:
        running.close()


def test_detections_timeout_s_in_seconds_drops_a_quiet_detectors_boxes_after_that_long_and_never_at_0(running):
    """The node looks once a second: boxes go between timeout and timeout + 1 s of quiet."""
    running.peer.publish_rgb(photo("coffee"), header(40))
    running.peer.result_for(header(40))
    set_double(running, "detections_timeout_s", 2.0)
    running.node.inputs.detections_cb(detections(header(40), detection(300, 300, 80, 80, "a", 0.9)))
    sent = time.monotonic()
    wait_until(lambda: running.node.session.object_labels(), 30, "the detector's box")
    wait_until(lambda: not running.node.session.object_labels(), 10, "the detector's boxes to expire")
    quiet_for = time.monotonic() - sent
    assert 2.0 <= quiet_for <= 3.5, f"dropped after {quiet_for:.2f} s of quiet"
    set_double(running, "detections_timeout_s", 0.0)  # 0: kept however long the detector is quiet
    running.node.inputs.detections_cb(detections(header(40), detection(300, 300, 80, 80, "b", 0.9)))
    wait_until(lambda: running.node.session.object_labels(), 30, "the detector's box")
    time.sleep(2.5)
    assert list(running.node.session.object_labels().values()) == ["b"]


def test_discover_period_s_in_seconds_spaces_discovery_passes_that_long(checkpoint):
    """A pass starts when the period since the last one ended is over, at the next camera frame."""
    running = Running(checkpoint, discover_period_s=3600.0, discover_batches_per_frame=64,
                      everything_points_per_side=4, discover_min_area=100_000_000)  # passes that add nothing
    passes: list[float] = []  # when each pass was seen to end
    stop = threading.Event()

    def camera() -> None:
        t = 0
        while not stop.is_set():  # 5 Hz; the node skips what it cannot keep up with
            t += 1
            running.peer.publish_rgb(photo("coffee"), header(50 + t // 5, (t % 5) * 200_000_000))
            stop.wait(0.2)
    feeder = threading.Thread(target=camera, daemon=True)
    try:
        feeder.start()
        deadline = time.monotonic() + 60
        while len(passes) < 3 and time.monotonic() < deadline:
            done = running.node.counts().discovery_passes
            if done > len(passes):
                passes.append(time.monotonic())
                if done == 1:  # the first pass starts at once; the next waits the period
                    time.sleep(2.0)
                    assert running.node.counts().discovery_passes == 1, "3600 s is not over yet"
                    set_double(running, "discover_period_s", 3.0)
            time.sleep(0.02)
        assert len(passes) == 3, f"passes seen at {passes}"
        gaps = [b - a for a, b in zip(passes, passes[1:])]
        assert all(3.0 <= gap <= 6.0 for gap in gaps), f"passes {gaps} s apart"
    finally:
        stop.set()
        feeder.join()
        running.close()
