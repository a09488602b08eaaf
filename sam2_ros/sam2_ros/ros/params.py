"""The settings (core/settings.py) as ROS parameters: descriptors to declare them, answers to a change."""
from __future__ import annotations

import difflib
from typing import Callable, Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException

from sam2_ros.core import settings as S
from sam2_ros.core.settings import Param


class InvalidParameters(ValueError):
    """A value given at start-up (launch argument, parameter file, override) the node cannot run with."""

    @classmethod
    def from_error(cls, error: ParameterException | ValueError) -> InvalidParameters:
        return cls(f"invalid parameter at start-up: {error}. Fix the launch argument or parameter file "
                   "(sam2_segmenter_node --help lists every parameter and its range)")


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


def unknown_parameters(given: Iterable[str], declared: Callable[[str], bool]) -> str:
    """Name the start-up parameters this node does not have, with the one each was likely meant as ("" if none).

    rclpy drops them without a word, and a typo (imag_size:=512) would leave the default running.
    """
    names = [param.name for param in S.PARAMS]
    unknown = sorted(name for name in given if not declared(name))
    return "; ".join(f"'{name}' is not a parameter of this node" + "".join(
        f" (did you mean '{close}'?)" for close in difflib.get_close_matches(name, names, n=1)) for name in unknown)
