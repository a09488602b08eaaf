"""The settings (core/settings.py) as ROS parameters: descriptors to declare them, answers to a change."""
from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from sam2_ros.core.settings import Param


def descriptor(param: Param) -> ParameterDescriptor:
    """Describe a parameter (description, ranges, choices) as `ros2 param describe` shows it."""
    described = ParameterDescriptor(description=param.description, read_only=param.read_only)
    if param.int_range:
        low, high = param.int_range
        described.integer_range = [IntegerRange(from_value=low, to_value=high)]
    if param.float_range:
        described.floating_point_range = [FloatingPointRange(
            from_value=param.float_range[0], to_value=param.float_range[1])]
    if param.choices:
        described.additional_constraints = f"one of: {', '.join(param.choices)}"
    return described


def refuse_or_accept(error: Exception | None) -> SetParametersResult:
    """Answer a run-time parameter change."""
    return SetParametersResult(successful=error is None, reason="" if error is None else str(error))
