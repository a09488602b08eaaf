"""The settings as ROS parameters: descriptors that `ros2 param describe` shows, and answers to a change."""
from sam2_ros.core.settings import PARAMS
from sam2_ros.ros.params import descriptor, refuse_or_accept, unknown_parameters


def test_every_descriptor_carries_its_parameters_description_and_read_only_flag():
    for param in PARAMS:
        described = descriptor(param)
        assert described.description == param.description and described.read_only == param.read_only


def test_ranges_become_ros_integer_and_floating_point_ranges():
    size = next(p for p in PARAMS if p.name == "image_size")
    (integers,) = descriptor(size).integer_range
    assert (integers.from_value, integers.to_value) == (128, 2048)
    threshold = next(p for p in PARAMS if p.name == "score_threshold")
    (floats,) = descriptor(threshold).floating_point_range
    assert (floats.from_value, floats.to_value) == (0.0, 1.0)


def test_the_allowed_choices_are_in_the_descriptor_for_ros2_param_describe():
    mode = next(param for param in PARAMS if param.name == "mode")
    assert descriptor(mode).additional_constraints == "one of: track, image"


def test_a_refused_change_carries_the_reason_and_an_accepted_one_none():
    refused = refuse_or_accept(ValueError("max_objects must be at least 1"))
    assert not refused.successful and refused.reason == "max_objects must be at least 1"
    accepted = refuse_or_accept(None)
    assert accepted.successful and accepted.reason == ""


def test_start_up_parameters_the_node_lacks_are_named_with_the_likely_one_meant():
    declared = {"image_size", "use_sim_time"}.__contains__
    assert unknown_parameters(["zzz", "image_size", "imag_size", "use_sim_time"], declared) == (
        "'imag_size' is not a parameter of this node (did you mean 'image_size'?); "
        "'zzz' is not a parameter of this node")
    assert unknown_parameters(["image_size"], declared) == ""
