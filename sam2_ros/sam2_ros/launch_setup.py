"""What the launch file hands the node, free of `launch` so that it is tested where launch is not installed.

The parameter file comes first and only the launch arguments a user actually set follow it:
an argument left at its empty default never overrides the user's file.
"""
from __future__ import annotations

from ament_index_python.packages import PackageNotFoundError, get_package_prefix

# launch arguments that set a parameter
OVERRIDES = ("checkpoint", "model", "device", "precision", "image_size", "backend", "graphs", "compressed", "depth",
             "text_prompt", "text_detector")


def parameter_value(name: str, text: str) -> object:
    """Convert a launch argument's text to the parameter's type (depth:=TOPIC also turns 3D on)."""
    if name == "depth" and text.lower() not in ("true", "false"):
        return True
    if name == "image_size":
        if not text.isdigit():
            raise ValueError(f"image_size:={text}: use a whole number of pixels, such as 512")
        return int(text)
    if name in ("compressed", "depth"):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{name}:={text}: use true or false")
        return text.lower() == "true"
    return text


def node_parameters(params_file: str, arguments: dict[str, str]) -> list:
    """Return the node's `parameters=`: the file, then the arguments that were set (later ones win)."""
    given = {name: parameter_value(name, text) for name, text in arguments.items() if text != ""}
    return [params_file, given] if given else [params_file]


def sibling(topic: str, name: str) -> str:
    """Return the topic beside `topic`, as image_transport pairs them.

    /camera/color/image_raw -> /camera/color/camera_info; a bare name -> a bare name.
    """
    head, _, _ = topic.rpartition("/")
    return f"{head}/{name}" if head or topic.startswith("/") else name


def remappings(image: str, camera_info: str = "", depth: str = "") -> list[tuple[str, str]]:
    """Return the camera topics, its compressed transport, and rqt_image_view's clicks on the overlay.

    camera_info defaults to the one beside the image; a depth topic brings the depth camera's
    camera_info beside it. Relative names: under a namespace they resolve inside it, as the
    node's own topics do.
    """
    pairs = [("image", image), ("image/compressed", f"{image}/compressed"),
             ("camera_info", camera_info or sibling(image, "camera_info")),
             ("clicked_pixel", "sam2_segmenter_node/overlay_mouse_left")]
    if depth and depth.lower() not in ("true", "false"):
        pairs += [("depth", depth), ("depth/camera_info", sibling(depth, "camera_info"))]
    return pairs


def require_package(name: str, why: str) -> None:
    """Fail the launch before anything starts when a package it would run is missing."""
    try:
        get_package_prefix(name)
    except PackageNotFoundError:
        raise RuntimeError(f"{why}, but package '{name}' is not installed (apt install ros-$ROS_DISTRO-"
                           f"{name.replace('_', '-')}): nothing was started") from None
