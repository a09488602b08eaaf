"""Counters, timings and /diagnostics: what the node saw, counted in one place.

`Stats` is written by every thread under its own lock; `status` is a pure function of a
snapshot, so what /diagnostics says is testable without a node. Refusals (what a sender got
wrong) and failures (the model or the node) are counted and logged apart: only failures WARN.
"""
from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from sam2_ros.core.frames import FrameNotKept
from sam2_ros.core.prompts import PromptError
from sam2_ros.core.segmenter import FrameNotCached
from sam2_ros.core.tracker import TrackerError
from sam2_ros.core.work_queue import Refused
from sam2_ros.ros.conversions import ImageError, ImageTooLarge

# What a sender got wrong: answered and counted as a refusal, never as a model failure.
REFUSED = (PromptError, TrackerError, FrameNotKept, FrameNotCached, ImageError, Refused)


def refusal_kind(error: Exception) -> str:
    """Name the /diagnostics counter a refusal goes to."""
    if isinstance(error, ImageTooLarge):
        return "image too large"
    if isinstance(error, ImageError):
        return "bad image"
    if isinstance(error, Refused):
        return "request not queued"
    if isinstance(error, (FrameNotKept, FrameNotCached)):
        return "frame not kept"
    return "bad prompt"


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Counts:
    """A copy of the counters at one instant."""

    received: int = 0
    processed: int = 0
    skipped: int = 0
    rejected: int = 0
    failed: int = 0
    with_3d: int = 0
    discovery_passes: int = 0
    discovered: int = 0
    refused: Counter = field(default_factory=Counter)
    no_depth: Counter = field(default_factory=Counter)
    latency_ms: list = field(default_factory=list)
    model_ms: list = field(default_factory=list)
    discovery_ms: list = field(default_factory=list)
    last_error: str = ""
    text_passes: int = 0
    text_added: int = 0
    text_ms: list = field(default_factory=list)


class Stats:
    """Counters and recent timings, written by any thread under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = Counts()
        self._latency: deque[float] = deque(maxlen=200)
        self._model: deque[float] = deque(maxlen=200)
        self._discovery: deque[float] = deque(maxlen=20)
        self._text: deque[float] = deque(maxlen=20)

    def count(self, **increments: int) -> None:
        """Add to counters by name (received=1, skipped=n, ...)."""
        with self._lock:
            for name, value in increments.items():
                setattr(self._counts, name, getattr(self._counts, name) + value)

    def refusal(self, kind: str, message: str) -> None:
        with self._lock:
            self._counts.rejected += 1
            self._counts.refused[kind] += 1
            self._counts.last_error = message

    def failure(self, message: str) -> None:
        with self._lock:
            self._counts.failed += 1
            self._counts.last_error = message

    def no_depth(self, kind: str) -> None:
        with self._lock:
            self._counts.no_depth[kind] += 1

    def frame_done(self, model_ms: float, latency_ms: float | None, with_3d: bool) -> None:
        """One camera frame processed and published."""
        with self._lock:
            self._counts.processed += 1
            self._counts.with_3d += with_3d
            self._model.append(model_ms)
            if latency_ms is not None:
                self._latency.append(latency_ms)

    def discovery_done(self, ms: float, discovered: int) -> None:
        with self._lock:
            self._counts.discovery_passes += 1
            self._counts.discovered += discovered
            self._discovery.append(ms)

    def text_done(self, ms: float, added: int) -> None:
        """One text detector pass ended, and added this many objects."""
        with self._lock:
            self._counts.text_passes += 1
            self._counts.text_added += added
            self._text.append(ms)

    def snapshot(self) -> Counts:
        with self._lock:
            c = self._counts
            return Counts(c.received, c.processed, c.skipped, c.rejected, c.failed, c.with_3d, c.discovery_passes,
                          c.discovered, Counter(c.refused), Counter(c.no_depth), list(self._latency),
                          list(self._model), list(self._discovery), c.last_error, c.text_passes, c.text_added,
                          list(self._text))


def status(name: str, counts: Counts, *, device: str, objects: int, queued: int, depth: bool,
           discovery: bool, text: tuple[str, ...] = ()) -> DiagnosticStatus:
    """Return the node's DiagnosticStatus: WARN only when the model or the node failed, not for bad input."""
    values = {
        "frames received": counts.received, "frames processed": counts.processed, "frames skipped": counts.skipped,
        "inputs rejected": counts.rejected, "model failures": counts.failed,
        **{f"refused: {kind}": n for kind, n in sorted(counts.refused.items())},
        **({"frames with 3D": counts.with_3d} if depth else {}),
        **{f"no depth: {kind}": n for kind, n in sorted(counts.no_depth.items())},
        "requests queued": queued,
        "latency p50 ms": percentile(counts.latency_ms, 50), "latency p95 ms": percentile(counts.latency_ms, 95),
        "model p50 ms": percentile(counts.model_ms, 50), "device": device, "objects": objects,
        **({"discovery passes": counts.discovery_passes, "objects discovered": counts.discovered,
            "discovery ms p50": percentile(counts.discovery_ms, 50)} if discovery else {}),
        **({"text prompt": " . ".join(text), "text passes": counts.text_passes, "objects from text": counts.text_added,
            "text detector ms p50": percentile(counts.text_ms, 50)} if text else {}),
        "last error": counts.last_error,
    }
    level = DiagnosticStatus.WARN if counts.failed else DiagnosticStatus.OK
    return DiagnosticStatus(level=level, name=f"{name}: processing",
                            message="model failures seen" if counts.failed else "ok", hardware_id=device,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


class Diagnostics:
    """The /diagnostics publisher, and the one place refusals and failures are counted and logged."""

    def __init__(self, node, fully_qualified: bool = False):
        self._node = node
        self._name = node.get_fully_qualified_name() if fully_qualified else node.get_name()
        self.stats = Stats()
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def reject(self, message: str, kind: Exception | str) -> None:
        """Count and log a sender's mistake: by kind, by kind, logged once a second at most."""
        self.stats.refusal(kind if isinstance(kind, str) else refusal_kind(kind), message)
        self._node.get_logger().warning(message, throttle_duration_sec=1.0)

    def fail(self, message: str) -> None:
        """Count and log a failure of the model or the node, as an error (not while the process exits)."""
        if not self._node.context.ok():
            return
        self.stats.failure(message)
        self._node.get_logger().error(message, throttle_duration_sec=1.0)

    def job_failed(self, error: Exception) -> None:
        if isinstance(error, REFUSED):
            self.reject(str(error), error)
        else:
            self.fail(f"request failed: {type(error).__name__}: {error}")

    def publish(self, **context) -> None:
        array = DiagnosticArray(status=[status(self._name, self.stats.snapshot(), **context)])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)

    def close(self) -> None:
        self._node.destroy_publisher(self._publisher)
