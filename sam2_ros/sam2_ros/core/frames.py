"""The recent frames a prompt can refer to: one owner, identified by arrival, not by stamp alone."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from sam2_ros.core.encoding import EncodedFrame
from sam2_ros.core.work_queue import NotYet


def stamp_text(stamp_ns: int) -> str:
    """Write a stamp as ROS tools print it: seconds with every nanosecond digit."""
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d} s"


class FrameNotKept(KeyError):
    """A prompt refers to a frame that was never processed or is no longer kept."""

    def __str__(self) -> str:
        return str(self.args[0])


class FrameNotYet(NotYet):
    """A prompt refers to a frame newer than every processed one: it waits for that frame (see work_queue)."""


class FrameMismatch(RuntimeError):
    """An output that does not describe the frame whose header it would carry: never published."""


@dataclass(frozen=True)
class RecentFrame:
    """A processed frame: what results for it carry, and what prompting it again needs."""

    seq: int  # arrival order: unique even when a bag loops or two cameras share stamps
    stamp_ns: int  # the source header's stamp; 0 for none
    header: object  # the source header, unchanged (a std_msgs/Header in the node)
    rgb: np.ndarray  # H x W x 3 uint8, as given to SAM 2
    encoded: EncodedFrame  # decoder inputs only (see encoding.for_prompts)
    tracker_index: int | None  # the tracker's frame index for this frame (None: not tracked, image mode)

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.encoded.image_hw


class FrameRing:
    """The newest `capacity` processed frames, oldest dropped first.

    A frame joins only once everything about it succeeded (the node commits it together with
    the tracker's step), so the newest frame here is always the tracker's current frame.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._frames: OrderedDict[int, RecentFrame] = OrderedDict()

    def __len__(self) -> int:
        return len(self._frames)

    def commit(self, frame: RecentFrame) -> None:
        if self._frames and frame.seq <= next(reversed(self._frames)):
            raise ValueError(f"frame {frame.seq} is not newer than frame {next(reversed(self._frames))}")
        self._frames[frame.seq] = frame
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)

    def newest(self) -> RecentFrame:
        if not self._frames:
            raise FrameNotKept("no camera frame processed yet: prompts need a frame")
        return next(reversed(self._frames.values()))

    def find(self, stamp_ns: int, max_age_ns: int = 0) -> RecentFrame:
        """Return the kept frame a prompt stamped `stamp_ns` refers to (0: the newest frame).

        The newest frame with exactly this stamp, or else the first kept frame after it, never an
        older one: with a 30 Hz camera and a 5 Hz model, a person clicks on (or a detector sees) a
        frame the node skipped. A stamp after every kept frame, or any stamp while no frame is
        kept yet, raises FrameNotYet (the frame is still on its way: the prompt waits for it).
        Stamps older than every kept frame, or more than `max_age_ns` (0: no limit) before the
        newest one, are refused.
        """
        if stamp_ns and not self._frames:  # a detector may answer before the node's first frame is out
            raise FrameNotYet(f"no frame stamped {stamp_text(stamp_ns)} or later processed yet (none so far)")
        newest = self.newest()
        if stamp_ns == 0:
            return newest
        if max_age_ns and newest.stamp_ns - stamp_ns > max_age_ns:  # a kept frame's exact stamp too
            raise FrameNotKept(f"prompt is stamped {stamp_text(newest.stamp_ns - stamp_ns)} before the newest "
                               f"frame, more than prompt_max_age_s {max_age_ns / 1e9:g} s")
        frames = list(reversed(self._frames.values()))
        exact = next((frame for frame in frames if frame.stamp_ns == stamp_ns), None)
        if exact is not None:
            return exact
        oldest, latest = min(frame.stamp_ns for frame in frames), max(frame.stamp_ns for frame in frames)
        if stamp_ns > latest:
            raise FrameNotYet(f"no frame stamped {stamp_text(stamp_ns)} or later processed yet (the latest is "
                              f"{stamp_text(latest)})")
        if stamp_ns < oldest:
            raise FrameNotKept(f"prompt is stamped for frame {stamp_text(stamp_ns)}, older than every frame this "
                               f"node keeps (from {stamp_text(oldest)}; recent_frames {self.capacity})")
        return min((frame for frame in frames if frame.stamp_ns > stamp_ns), key=lambda frame: frame.stamp_ns)

    def clear(self) -> None:
        self._frames.clear()
