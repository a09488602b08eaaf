"""The text prompt in force and its detector passes, spread over camera frames (the worker's alone).

A pass starts on the newest frame as soon as a prompt arrives and then every text_period_s, and
computes a slice at a time, as long as its caller (the worker) says: the time the camera leaves
the model idle, or text_slice_ms after a frame when it leaves none. The detector loads on a thread
of its own the first time a prompt needs it (it can take a fetch), never on the worker.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Callable

from sam2_ros.core import settings as S
from sam2_ros.core.frames import RecentFrame
from sam2_ros.core.sliced import SlicedCall
from sam2_ros.core.text import Found, TextDetector


class TextPrompts:
    """Phrases in force, the detector, the pass in flight and when the last one ended."""

    def __init__(self, load: Callable[[], TextDetector]):
        self._load = load
        self._detector: Future | None = None
        self.phrases: tuple[str, ...] = ()
        self._pass: SlicedCall | None = None
        self._pass_hw: tuple[int, int] | None = None
        self._ended_at: float | None = None  # time.monotonic() when the last pass ended; None: due now
        self._started_on: int | None = None  # the seq of the frame the last pass started on

    def set(self, phrases: tuple[str, ...]) -> None:
        """Put phrases in force (replacing any): a pass starts on the newest frame; the detector loads if it must."""
        self.stop()
        self.phrases, self._started_on = phrases, None
        if self._detector is None:
            self._detector = Future()
            threading.Thread(target=self._load_detector, name="text_detector_load", daemon=True).start()

    def clear(self) -> None:
        self.stop()
        self.phrases = ()

    def stop(self) -> None:
        """Drop the pass in flight (a new prompt, a failure, a reset); the next is due at once."""
        if self._pass is not None:
            self._pass.cancel()
        self._pass, self._ended_at = None, None

    def detector(self) -> TextDetector | None:
        """Return the loaded detector; None while it loads; its loading error is raised (once) here."""
        if self._detector is None or not self._detector.done():
            return None
        error = self._detector.exception()
        if error is not None:
            self._detector, self.phrases = None, ()  # the next prompt tries again
            raise error
        return self._detector.result()

    def loading(self) -> bool:
        """Return True while a text prompt waits for its detector to load."""
        return bool(self.phrases) and self._detector is not None and not self._detector.done()

    def wants_time(self, newest: RecentFrame | None, config: S.NodeConfig) -> bool:
        """Return True while a pass is in flight, or one could start on `newest` now."""
        return self._pass is not None or self._startable(newest, config.text.period_s) and self._loaded()

    def step(self, frame: RecentFrame | None, config: S.NodeConfig,
             slice_s: float) -> tuple[list[Found], tuple[int, int], float] | None:
        """Compute the pass for about `slice_s`, first starting one on `frame` when one is due.

        Returns (boxes, their image's size, ms) when the pass ends, else None.
        """
        text = config.text
        if self._pass is None:
            if not self._startable(frame, text.period_s) or (detector := self.detector()) is None:
                return None
            self._pass = detector.start(frame.rgb, self.phrases, text.box_threshold, text.text_threshold)
            self._pass_hw = frame.rgb.shape[:2]  # the pixels the detector sees
            self._started_on = frame.seq
        if not self._pass.step(slice_s):
            return None
        run, self._pass = self._pass, None
        self._ended_at = time.monotonic()
        return run.result(), self._pass_hw, run.ms

    def _startable(self, frame: RecentFrame | None, period_s: float) -> bool:
        """Return True when a pass is due and `frame` is one no pass of this prompt started on (nor failed on)."""
        due = self._ended_at is None or (period_s > 0 and time.monotonic() - self._ended_at >= period_s)
        return bool(self.phrases) and frame is not None and frame.seq != self._started_on and due

    def _loaded(self) -> bool:
        return self._detector is not None and self._detector.done()

    def _load_detector(self) -> None:
        future = self._detector
        try:
            future.set_result(self._load())
        except Exception as error:  # handed to the worker by detector()
            future.set_exception(error)
