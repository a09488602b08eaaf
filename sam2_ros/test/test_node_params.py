"""Time-valued parameters set on a running node, through the parameter service, in their own units."""
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from conftest import photo, slow_frames
from rosharness import NODE, Running, add, box_prompt, header, wait_until


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
