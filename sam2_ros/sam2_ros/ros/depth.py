"""Depth images and camera models as they arrive, paired with a colour frame when its outputs are built.

Depth frames are kept for a time window (by stamp), not by count: a colour frame is paired
after SAM 2 has run on it, so the depth frame stamped like it must still be there however
fast depth comes and however slow the model is. A depth frame that has not arrived yet is
waited for, up to a deadline the caller sets (the outputs' thread waits, never the model's).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sam2_ros.core.geometry import DepthError, DepthImage, Intrinsics, Registration, register
from sam2_ros.ros.conversions import DEFAULT_MAX_PIXELS, ImageError, check_size, image_to_array
from sam2_ros.ros.prompt_msgs import stamp_ns

AUTO_WINDOW_MIN_S, AUTO_WINDOW_MAX_S = 2.0, 10.0
MAX_KEPT = 300  # depth frames at most, whatever the window (10 s at 30 Hz): a memory bound
STALLED_S = 5.0  # no depth frame for this long: depth has stopped, frames do not wait for it


class NoDepth(Exception):
    """Why a frame has no 3D: `kind` names the /diagnostics counter, `detail` goes to the log."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class DepthScene:
    """One depth frame ready for a colour frame: its readings, its camera, and where its pixels fall in colour."""

    header: Header
    depth: DepthImage  # metres where read: depth[y0:y1, x0:x1]
    intrinsics: Intrinsics
    registration: Registration


def intrinsics_of(info: CameraInfo, which: str) -> Intrinsics:
    """Return the rectified camera model of a CameraInfo: P where set (rectified images), else K."""
    matrix = info.p if any(info.p) else info.k
    try:
        return Intrinsics.from_matrix(np.asarray(matrix), info.width, info.height)
    except DepthError as error:
        raise NoDepth("unusable camera_info", f"{which}: {error}") from None


class DepthInput:
    """Depth frames of the last few seconds (by stamp) and the two camera infos; thread-safe.

    `window_s` 0 sizes the window from what pairing meets: twice the largest distance seen
    between the newest depth stamp and a colour frame being paired, within 2..10 s.
    """

    def __init__(self, window_s: float = 0.0, stalled_s: float = STALLED_S):
        self._ready = threading.Condition()
        self._frames: deque[tuple[int, Image]] = deque()  # in arrival order
        self._colour_info: CameraInfo | None = None
        self._depth_info: CameraInfo | None = None
        self._window_s, self._stalled_s = window_s, stalled_s
        self._behind_ns: deque[int] = deque(maxlen=100)  # newest depth stamp - colour stamp, per pairing
        self._arrived_at = float("-inf")  # monotonic time of the newest depth frame (or of expect())

    def expect(self) -> None:
        """Depth is expected from now (the node is activated): frames wait for its first frames too."""
        with self._ready:
            self._arrived_at = max(self._arrived_at, time.monotonic())

    def set_window(self, window_s: float) -> None:
        with self._ready:
            self._window_s = window_s

    def window_s(self) -> float:
        """Return the window kept now, seconds."""
        with self._ready:
            return self._window_ns() / 1e9

    def _window_ns(self) -> int:
        if self._window_s > 0:
            return round(self._window_s * 1e9)
        behind = 2 * max(self._behind_ns, default=0) / 1e9
        return round(min(max(behind, AUTO_WINDOW_MIN_S), AUTO_WINDOW_MAX_S) * 1e9)

    def add_depth(self, msg: Image) -> None:
        stamp = stamp_ns(msg.header)
        with self._ready:
            window = self._window_ns()
            self._frames.append((stamp, msg))
            while len(self._frames) > MAX_KEPT or abs(stamp - self._frames[0][0]) > window:
                self._frames.popleft()  # older than the window, or from before a jump of the clock
            self._arrived_at = time.monotonic()
            self._ready.notify_all()

    def set_colour_info(self, msg: CameraInfo) -> None:
        with self._ready:
            self._colour_info = msg

    def set_depth_info(self, msg: CameraInfo) -> None:
        with self._ready:
            self._depth_info = msg

    def stamps(self) -> set[int]:
        """Stamps of the depth frames kept now (what a frame can be paired with)."""
        with self._ready:
            return {stamp for stamp, _ in self._frames}

    def has(self, stamp: int) -> bool:
        """Whether a depth frame of exactly this stamp is kept (asked once per camera frame)."""
        with self._ready:
            return any(s == stamp for s, _ in self._frames)

    def has_infos(self) -> tuple[bool, bool]:
        """Whether the colour and the depth camera_info have arrived."""
        with self._ready:
            return self._colour_info is not None, self._depth_info is not None

    def _closest(self, stamp: int) -> tuple[int, Image] | None:
        return min(((abs(s - stamp), m) for s, m in self._frames), key=lambda pair: pair[0], default=None)

    def _may_still_come(self, stamp: int) -> bool:
        """Tell whether a depth frame closer to `stamp` can still arrive: depth flows, its newest is older."""
        newest = max((s for s, _ in self._frames), default=None)
        flowing = time.monotonic() - self._arrived_at < self._stalled_s
        return flowing and (newest is None or newest < stamp)

    def wake(self) -> None:
        """Wake a pairing that waits (its caller has set its cancel event)."""
        with self._ready:
            self._ready.notify_all()

    def pair(self, stamp: int, colour_hw: tuple[int, int], max_age_ns: int, deadline: float = 0.0,
             max_pixels: int = DEFAULT_MAX_PIXELS, cancel: threading.Event | None = None) -> DepthScene:
        """Return the depth frame closest in stamp to colour frame `stamp`; NoDepth says why not.

        The exact stamp is waited for until `deadline` (time.monotonic()) while depth is flowing
        and has not yet reached `stamp`, unless `cancel` is set; then the closest within
        `max_age_ns` is taken.
        """
        with self._ready:
            while True:
                found = self._closest(stamp)
                left = deadline - time.monotonic()
                if (found is not None and found[0] == 0) or left <= 0 or not self._may_still_come(stamp) \
                        or (cancel is not None and cancel.is_set()):
                    break
                self._ready.wait(left)
            if self._frames:
                self._behind_ns.append(max(s for s, _ in self._frames) - stamp)
            colour_info, depth_info = self._colour_info, self._depth_info
        if found is None:
            raise NoDepth("no depth image received")
        age, msg = found
        if age > max_age_ns:
            raise NoDepth("none within depth_max_age_ms")
        return self._scene(msg, colour_hw, colour_info, depth_info, max_pixels)

    @staticmethod
    def _scene(msg: Image, colour_hw: tuple[int, int], colour_info: CameraInfo | None,
               depth_info: CameraInfo | None, max_pixels: int) -> DepthScene:
        if colour_info is None:
            raise NoDepth("no camera_info")
        if (colour_info.height, colour_info.width) != tuple(colour_hw):
            raise NoDepth("camera_info of another size than the image")
        depth_hw = (msg.height, msg.width)
        if depth_hw == tuple(colour_hw) and (depth_info is None or (depth_info.height, depth_info.width) != depth_hw):
            depth_info = colour_info  # registered at the same size: the same camera model
        if depth_info is None or (depth_info.height, depth_info.width) != depth_hw:
            raise NoDepth("depth of another size than the image and no depth/camera_info of its size")
        colour, depth = intrinsics_of(colour_info, "camera_info"), intrinsics_of(depth_info, "depth camera_info")
        try:
            check_size(msg.width, msg.height, max_pixels, what="depth image")
            readings = DepthImage(image_to_array(msg), msg.encoding)
        except (DepthError, ImageError) as error:
            raise NoDepth("unusable depth image", str(error)) from None
        return DepthScene(msg.header, readings, depth, register(colour, depth))
