"""Delivery: each processed frame's outputs go out from one thread, after its depth frame.

The worker hands a frame over and goes on with the next camera frame. A depth image stamped
like that frame may still be on its way (depth cameras lag colour), so the bounded wait for it
is here, off the model's thread; frames go out in the order SAM 2 processed them.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from sam2_ros.core import settings as S
from sam2_ros.core.frames import RecentFrame
from sam2_ros.ros.depth import DepthInput, DepthScene, NoDepth
from sam2_ros.ros.diagnostics import Diagnostics
from sam2_ros.ros.outputs import Outputs
from sam2_ros.ros.results import ResultBuilder

CAPACITY = 64  # frames waiting for depth at most; the worker waits for room beyond that


@dataclass
class Parcel:
    """One frame's outputs to be sent, with the settings it was processed with."""

    frame: RecentFrame
    objects: list
    config: S.NodeConfig
    builder: ResultBuilder
    deadline: float  # time.monotonic(): wait for its depth frame until then
    model_ms: float | None  # a camera frame's, counted in /diagnostics; None for a prompt's change
    timings: dict
    future: Future = field(default_factory=Future)


class Delivery:
    """The outputs' thread: pairs depth (bounded wait), publishes, answers each parcel's future."""

    def __init__(self, node, outputs: Outputs, depth: DepthInput, diagnostics: Diagnostics):
        self._node, self._outputs, self._depth, self._diagnostics = node, outputs, depth, diagnostics
        self._parcels: queue.Queue[Parcel | None] = queue.Queue(CAPACITY)
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._hurry.clear()
        self._thread = threading.Thread(target=self._run, name="sam2_delivery", daemon=True)
        self._thread.start()

    def send(self, frame: RecentFrame, objects, config: S.NodeConfig, builder: ResultBuilder,
             model_ms: float | None = None, **timings: float) -> Future:
        """Queue a frame's outputs; the future gets the published result (or the reason it was not)."""
        parcel = Parcel(frame, list(objects), config, builder, time.monotonic() + config.depth.wait_ms / 1e3,
                        model_ms, timings)
        self._parcels.put(parcel)
        return parcel.future

    def hurry(self) -> None:
        """Stop waiting for depth: what is pending goes out now (a stop is coming)."""
        self._hurry.set()
        self._depth.wake()

    def stop(self) -> None:
        """Send what is pending without waiting for depth, then end the thread."""
        if self._thread is None:
            return
        self.hurry()
        self._parcels.put(None)
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while (parcel := self._parcels.get()) is not None:
            try:
                parcel.future.set_result(self._deliver(parcel))
            except Exception as error:  # one frame's outputs fail; the next frame's go out
                self._diagnostics.fail(f"outputs of frame {parcel.frame.stamp_ns} dropped: "
                                       f"{type(error).__name__}: {error}")
                parcel.future.set_exception(error)

    def _deliver(self, parcel: Parcel):
        frame, config = parcel.frame, parcel.config
        scene = parcel.builder.scene or self._scene(frame, config, 0.0 if self._hurry.is_set() else parcel.deadline)
        result = self._outputs.publish(frame, parcel.objects, config, parcel.builder, scene, **parcel.timings)
        if parcel.model_ms is not None:
            known = frame.stamp_ns and not math.isnan(result.latency_ms)
            self._diagnostics.stats.frame_done(parcel.model_ms, result.latency_ms if known else None, scene is not None)
        return result

    def scene_now(self, stamp: int, image_hw: tuple[int, int], config: S.NodeConfig) -> DepthScene | None:
        """Return the depth frame of exactly this stamp if it is here already (3D goes with the masks)."""
        if not config.depth.enabled or not self._depth.has(stamp):
            return None
        try:
            return self._depth.pair(stamp, image_hw, 0, 0.0, config.inputs.max_image_pixels)
        except NoDepth:  # counted when the frame's outputs are built
            return None

    def _scene(self, frame: RecentFrame, config: S.NodeConfig, deadline: float) -> DepthScene | None:
        """Pair the depth frame of `frame`'s stamp (waiting until `deadline`); None when 3D is off or none."""
        if not config.depth.enabled:
            return None
        try:
            return self._depth.pair(frame.stamp_ns, frame.image_hw, round(config.depth.max_age_ms * 1e6), deadline,
                                    config.inputs.max_image_pixels, self._hurry)
        except NoDepth as error:
            self._diagnostics.stats.no_depth(error.kind)
            if error.detail:
                self._node.get_logger().warning(f"frame without 3D: {error}", throttle_duration_sec=5.0)
            return None
