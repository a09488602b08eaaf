"""Discovery: segment-everything passes spread over camera frames, in track mode.

It returns proposals only; the tracking session decides which become objects (`novel`, at the
newest frame's size). A pass starts every discover_period_s while there is room, and decodes
discover_batches_per_frame point batches after each frame, so the camera is never held up by
more than that much decoder work.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from sam2_ros.core import settings as S
from sam2_ros.core.everything import Everything, EverythingPass, Proposal
from sam2_ros.core.frames import RecentFrame
from sam2_ros.core.model import LoadedModel


def resized(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to another frame size (nearest neighbour keeps it binary)."""
    if mask.shape == tuple(hw):
        return mask
    return cv2.resize(mask.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


class Discovery:
    """One pass at a time over the frame it started on; the worker's alone."""

    def __init__(self, model: LoadedModel):
        self._model = model
        self._pass: EverythingPass | None = None
        self._finished_at: float | None = None  # time.monotonic() when the last pass ended; None: none yet

    def step(self, frame: RecentFrame, config: S.NodeConfig, room: int) -> tuple[list[Proposal], float] | None:
        """Advance the pass (starting one when due); when it ends, (its proposals, its ms), else None."""
        if self._pass is None:
            due = self._finished_at is None or time.monotonic() - self._finished_at >= config.discovery.period_s
            if room <= 0 or not due:  # the first pass is due at once, however recently the machine booted
                return None
            self._pass = Everything(self._model, config.everything.settings()).start(frame.encoded)
        proposals = self._pass.step(config.discovery.batches_per_frame)
        if proposals is None:
            return None
        run, self._pass = self._pass, None
        self._finished_at = time.monotonic()
        return proposals, run.ms

    def forget(self) -> None:
        """Drop the pass in flight (after a failure, or a reset)."""
        self._pass = None
