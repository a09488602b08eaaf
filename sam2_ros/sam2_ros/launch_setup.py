"""What the launch file hands the node, free of `launch` so that it is tested where launch is not installed.

The parameter file comes first and only the launch arguments a user actually set follow it:
an argument left at its empty default never overrides the user's file.
"""
from __future__ import annotations

from ament_index_python.packages import PackageNotFoundError, get_package_prefix

OVERRIDES = ("checkpoint", "model", "device", "compressed")  # launch arguments that set a parameter


def parameter_value(name: str, text: str) -> object:
    """Convert a launch argument's text to the parameter's type."""
    if name == "compressed":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"compressed:={text}: use true or false")
        return text.lower() == "true"
    return text


def node_parameters(params_file: str, arguments: dict[str, str]) -> list:
    """Return the node's `parameters=`: the file, then the arguments that were set (later ones win)."""
    given = {name: parameter_value(name, text) for name, text in arguments.items() if text != ""}
    return [params_file, given] if given else [params_file]


def remappings(image: str) -> list[tuple[str, str]]:
    """Return the camera topic, its compressed transport, and rqt_image_view's clicks on the overlay.

    Relative names: under a namespace they resolve inside it, as the node's own topics do.
    """
    return [("image", image), ("image/compressed", f"{image}/compressed"),
            ("clicked_pixel", "sam2_segmenter_node/overlay_mouse_left")]


def require_package(name: str, why: str) -> None:
    """Fail the launch before anything starts when a package it would run is missing."""
    try:
        get_package_prefix(name)
    except PackageNotFoundError:
        raise RuntimeError(f"{why}, but package '{name}' is not installed (apt install ros-$ROS_DISTRO-"
                           f"{name.replace('_', '-')}): nothing was started") from None
