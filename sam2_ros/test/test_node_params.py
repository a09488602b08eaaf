"""Time-valued parameters set on a running node, through the parameter service, in their own units."""
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from conftest import photo
from rosharness import NODE, Running, add, box_prompt, header


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
