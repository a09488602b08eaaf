"""The worker: one thread that owns the model, taking camera frames and requests from the queue.

Per camera frame: deserialise, convert, one settings snapshot, SAM 2 (the session), publish
(the outputs), then a discovery step. A request is a job that runs on this thread between
frames; long ones (segment everything) run a slice per turn, so the camera keeps its turn and
`stop()` returns within one slice.
"""
from __future__ import annotations

import threading
from typing import Callable

from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from sam2_ros.ros import params as P
from sam2_ros.ros.conversions import ImageError, compressed_to_rgb, image_to_rgb
from sam2_ros.ros.depth import DepthInput, DepthScene, NoDepth
from sam2_ros.ros.diagnostics import Diagnostics
from sam2_ros.ros.outputs import Outputs
from sam2_ros.ros.prompt_msgs import stamp_ns
from sam2_ros.ros.session import Change, TrackingSession
from sam2_ros.ros.work_queue import Job, WorkQueue


class Worker:
    """The model's thread: started on activate, stopped (after its current slice) on deactivate."""

    def __init__(self, node, queue: WorkQueue, session: TrackingSession, outputs: Outputs,
                 diagnostics: Diagnostics, depth: DepthInput, config: Callable[[], P.NodeConfig]):
        self._node, self._queue, self._session, self._outputs = node, queue, session, outputs
        self._diagnostics, self._depth, self._config = diagnostics, depth, config
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._queue.open()
        self._thread = threading.Thread(target=self._work, name="sam2_worker", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, reason: str) -> int:
        """Answer every queued request with `reason`, let the current item finish, join; return how many."""
        answered = self._queue.close(reason)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return answered

    def publish(self, change: Change | None, config: P.NodeConfig):
        """Publish a change's frame (prompts, detections, discovery); return (ids, result)."""
        if change is None:
            return None
        ids, frame, objects = change
        return ids, self._outputs.publish(frame, objects, config, self._outputs.builder(
            frame.header, frame.image_hw, config, self._depth_for(frame.stamp_ns, frame.image_hw, config)))

    def _work(self) -> None:
        while (item := self._queue.take()) is not None:
            if isinstance(item, Job):
                self._session.follow(self._config())
                if item.execute(self._diagnostics.job_failed):
                    self._queue.resume(item)
                continue
            try:
                self._process(*item)
            except Exception as error:  # the worker must outlive any one frame
                self._diagnostics.fail(f"frame dropped: {type(error).__name__}: {error}")

    def _process(self, seq: int, raw: bytes) -> None:
        """Convert, run SAM 2 once, commit the frame, publish with its header and its settings."""
        config = self._config()  # this frame's settings, from SAM 2 to the last output
        inputs = config.inputs
        try:
            msg = deserialize_message(raw, CompressedImage if inputs.compressed else Image)
            rgb = (compressed_to_rgb(msg, inputs.max_image_pixels) if inputs.compressed
                   else image_to_rgb(msg, inputs.max_image_pixels))
        except ImageError as error:
            self._diagnostics.reject(f"image dropped: {error}", error)
            return
        key = stamp_ns(msg.header)
        paired = []
        depth = self._depth_for(key, rgb.shape[:2], config, paired)
        builder = self._outputs.builder(msg.header, rgb.shape[:2], config, depth)
        self._session.follow(config)
        try:
            done = self._session.process(seq, msg.header, key, rgb, config, on_object=builder.add)
        except Exception as error:  # one bad frame is dropped, the next one is processed
            self._diagnostics.fail(f"model failed on frame {key}: {type(error).__name__}: {error}; frame dropped")
            return
        for object_id, frames in done.dropped_cond_frames.items():
            self._node.get_logger().info(f"object {object_id}: over max_cond_frames, dropped prompted frames {frames}")
        result = self._outputs.publish(done.frame, done.objects, config, builder, encode_ms=done.encode_ms,
                                       decode_ms=done.decode_ms)
        self._diagnostics.stats.frame_done(done.model_ms, result.latency_ms if key else None, any(paired))
        if config.tracking.tracks and config.discovery.on:
            self._discover(done.frame, config)

    def _discover(self, frame, config: P.NodeConfig) -> None:
        try:
            outcome = self._session.discover(frame, config)
            if outcome is not None:
                change, ms = outcome
                self.publish(change, config)
                self._diagnostics.stats.discovery_done(ms, len(change[0]) if change else 0)
        except Exception as error:  # discovery is extra: the stream goes on without it
            self._session.forget_discovery()
            self._diagnostics.fail(f"discovery failed: {type(error).__name__}: {error}")

    def _depth_for(self, stamp: int, hw: tuple[int, int], config: P.NodeConfig,
                   paired: list | None = None) -> Callable[[], DepthScene | None] | None:
        """Pair a depth frame with colour frame `stamp` when asked; None when 3D is off."""
        if not config.depth.enabled:
            return None

        def pair() -> DepthScene | None:
            try:
                scene = self._depth.pair(stamp, hw, round(config.depth.max_age_ms * 1e6),
                                         config.inputs.max_image_pixels)
            except NoDepth as error:
                self._diagnostics.stats.no_depth(error.kind)
                if error.detail:
                    self._node.get_logger().warning(f"frame without 3D: {error}", throttle_duration_sec=5.0)
                return None
            if paired is not None:
                paired.append(True)
            return scene
        return pair

