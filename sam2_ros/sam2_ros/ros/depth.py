"""Depth images and camera models as they arrive, paired with a colour frame when the worker needs them.

message_filters would pair every colour frame with a depth frame; the node only processes the
newest colour frame, so a short stamp-keyed buffer of depth frames (filled by subscription
callbacks, read by the worker, one lock) is all it needs.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sam2_ros.core.geometry import DepthError, Intrinsics, Registration, depth_in_metres, register
from sam2_ros.ros.conversions import DEFAULT_MAX_PIXELS, ImageError, check_size, image_to_array
from sam2_ros.ros.prompt_msgs import stamp_ns


class NoDepth(Exception):
    """Why a frame has no 3D: `kind` names the /diagnostics counter, `detail` goes to the log."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class DepthScene:
    """One depth frame ready for a colour frame: metres, its camera, and where its pixels fall in colour."""

    header: Header
    metres: np.ndarray  # (H, W) float32, NaN = no reading
    intrinsics: Intrinsics
    registration: Registration


def intrinsics_of(info: CameraInfo) -> Intrinsics:
    """Return the rectified camera model of a CameraInfo: P where set (rectified images), else K."""
    matrix = info.p if any(info.p) else info.k
    return Intrinsics.from_matrix(np.asarray(matrix), info.width, info.height)


class DepthInput:
    """The newest depth frames (by stamp) and the two camera infos; thread-safe."""

    def __init__(self, capacity: int = 10):
        self._lock = threading.Lock()
        self._frames: deque[tuple[int, Image]] = deque(maxlen=capacity)
        self._colour_info: CameraInfo | None = None
        self._depth_info: CameraInfo | None = None

    def add_depth(self, msg: Image) -> None:
        with self._lock:
            self._frames.append((stamp_ns(msg.header), msg))

    def set_colour_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._colour_info = msg

    def set_depth_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._depth_info = msg

    def stamps(self) -> set[int]:
        """Stamps of the depth frames kept now (what a frame can be paired with)."""
        with self._lock:
            return {stamp for stamp, _ in self._frames}

    def has_infos(self) -> tuple[bool, bool]:
        """Whether the colour and the depth camera_info have arrived."""
        with self._lock:
            return self._colour_info is not None, self._depth_info is not None

    def pair(self, stamp: int, colour_hw: tuple[int, int], max_age_ns: int,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> DepthScene:
        """Return the depth frame closest in time to the colour frame `stamp`; NoDepth says why not."""
        with self._lock:
            frames, colour_info, depth_info = list(self._frames), self._colour_info, self._depth_info
        if not frames:
            raise NoDepth("no depth image received")
        age, msg = min(((abs(s - stamp), m) for s, m in frames), key=lambda pair: pair[0])
        if age > max_age_ns:
            raise NoDepth("none within depth_max_age_ms")
        if colour_info is None:
            raise NoDepth("no camera_info")
        height, width = colour_hw
        if (colour_info.height, colour_info.width) != (height, width):
            raise NoDepth("camera_info of another size than the image")
        depth_hw = (msg.height, msg.width)
        if depth_hw == colour_hw and (depth_info is None or (depth_info.height, depth_info.width) != depth_hw):
            depth_info = colour_info  # registered at the same size: the same camera model
        if depth_info is None or (depth_info.height, depth_info.width) != depth_hw:
            raise NoDepth("depth of another size than the image and no depth/camera_info of its size")
        try:
            check_size(msg.width, msg.height, max_pixels, what="depth image")
            colour, depth = intrinsics_of(colour_info), intrinsics_of(depth_info)
            metres = depth_in_metres(image_to_array(msg), msg.encoding)
        except (DepthError, ImageError) as error:
            raise NoDepth("unusable depth image", str(error)) from None
        return DepthScene(msg.header, metres, depth, register(colour, depth))
