"""The worker: one thread that owns the model, taking camera frames and requests from the queue.

Per camera frame: deserialise, convert, one settings snapshot, SAM 2 (the session), hand the
frame to the delivery (its outputs go out once its depth frame is paired), then a discovery
step. Long work (the text detector's pass, segment everything) computes in short slices while
no frame waits (a frame that arrives waits for one at most); only when a frame already waits as
one ends (the camera outpaces the model) does it take longer turns from tracking (text_slice_ms,
LONG_SLICE_S), so it still ends. A request is a job that runs on this thread between frames; a
long one runs a slice per turn, so the camera keeps its turn and `stop()` returns within one
slice. What a request, discovery or the text detector changed goes to the delivery like a camera
frame, in processing order; this thread never waits for it to be published (nor for its depth).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable

from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from sam2_ros.core import settings as S
from sam2_ros.core.session import Change, TrackingSession
from sam2_ros.core.work_queue import Job, Turn, WorkQueue
from sam2_ros.ros.conversions import ImageError, compressed_to_rgb, image_to_rgb
from sam2_ros.ros.delivery import Delivery
from sam2_ros.ros.diagnostics import Diagnostics
from sam2_ros.ros.outputs import Outputs
from sam2_ros.ros.prompt_msgs import stamp_ns

IDLE_SLICE_S = 0.01  # long work's slice while no frame waits: the most a new frame waits for it
LONG_SLICE_S = 0.2  # a long request's turn when the camera outpaces the model (a frame waits as one ends)
LOAD_POLL_S = 0.1  # while the text detector loads, the worker looks this often whether it is ready


class Worker:
    """The model's thread: started on activate, stopped (after its current slice) on deactivate."""

    def __init__(self, node, queue: WorkQueue, session: TrackingSession, outputs: Outputs,
                 delivery: Delivery, diagnostics: Diagnostics, config: Callable[[], S.NodeConfig]):
        self._node, self._queue, self._session, self._outputs = node, queue, session, outputs
        self._delivery, self._diagnostics, self._config = delivery, diagnostics, config
        self._thread: threading.Thread | None = None
        self._outpaced = False  # a frame already waited when the last one ended

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

    def job_slice_s(self) -> float:
        """Return how long a long request's turn computes: the camera's gaps unless it outpaces the model."""
        return LONG_SLICE_S if self._outpaced else IDLE_SLICE_S

    def deliver(self, change: Change | None, config: S.NodeConfig) -> tuple[list[int], Future] | None:
        """Hand a change's frame (prompts, detections, discovery) to the delivery; never wait for it.

        Returns the ids touched and the future of the published result: a service call waits on
        it in its own thread, and the model goes on with the next camera frame meanwhile.
        """
        if change is None:
            return None
        builder = self._outputs.builder(change.frame.header, change.frame.image_hw, config)
        return change.ids, self._delivery.send(change.frame, change.objects, config, builder)

    def _work(self) -> None:
        while (item := self._next()) is not None:
            if isinstance(item, Job):
                config = self._config()
                self._session.follow(config)
                turn = item.execute(self._diagnostics.job_failed, config.requests.timeout_s)
                if turn is Turn.AGAIN:
                    self._queue.resume(item)
                elif turn is Turn.PARK:  # its frame is not processed yet
                    self._queue.park(item)
                continue
            try:
                self._process(*item)
            except Exception as error:  # the worker must outlive any one frame
                self._diagnostics.fail(f"frame dropped: {type(error).__name__}: {error}")

    def _next(self) -> Job | tuple[int, bytes] | None:
        """Take the next item; until one waits, the text detector's pass has the thread."""
        while not self._queue.waiting():
            config = self._config()
            self._session.follow(config)
            if self._session.text_wants_time(config):
                self._find_text(config, IDLE_SLICE_S)
            elif self._session.text_loading():  # its first pass starts on the newest frame once it has loaded
                self._queue.wait(LOAD_POLL_S)
            else:
                break
        return self._queue.take()

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
        builder = self._outputs.builder(msg.header, rgb.shape[:2], config,
                                        self._delivery.scene_now(key, rgb.shape[:2], config))
        self._session.follow(config)
        try:
            done = self._session.process(seq, msg.header, key, rgb, config, on_object=builder.add)
        except Exception as error:  # one bad frame is dropped, the next one is processed
            self._diagnostics.fail(f"model failed on frame {key}: {type(error).__name__}: {error}; frame dropped")
            return
        for object_id, frames in done.dropped_cond_frames.items():
            self._node.get_logger().info(f"object {object_id}: over max_cond_frames, dropped prompted frames {frames}")
        self._delivery.send(done.frame, done.objects, config, builder, model_ms=done.model_ms,
                            encode_ms=done.encode_ms, decode_ms=done.decode_ms)
        if config.tracking.tracks and config.discovery.on:
            self._discover(done.frame, config)
        self._outpaced = self._queue.frame_waiting()
        if self._outpaced and self._session.text_wants_time(config):  # no idle time: the pass's share
            self._find_text(config, config.text.slice_ms / 1e3)

    def _find_text(self, config: S.NodeConfig, slice_s: float) -> None:
        try:
            outcome = self._session.text_step(config, slice_s)
            if outcome is not None:
                change, found, ms = outcome
                self.deliver(change, config)
                self._diagnostics.stats.text_done(ms, len(change.ids) if change else 0)
                self._node.get_logger().debug(f"text detector: {len(found)} box(es) in {ms:.0f} ms, "
                                              f"{len(change.ids) if change else 0} new object(s)")
        except Exception as error:  # the text prompt is extra: the stream goes on without it
            self._session.forget_text_pass()
            self._diagnostics.fail(f"text detector failed: {type(error).__name__}: {error}")

    def _discover(self, frame, config: S.NodeConfig) -> None:
        try:
            outcome = self._session.discover(frame, config)
            if outcome is not None:
                change, ms = outcome
                self.deliver(change, config)
                self._diagnostics.stats.discovery_done(ms, len(change.ids) if change else 0)
        except Exception as error:  # discovery is extra: the stream goes on without it
            self._session.forget_discovery()
            self._diagnostics.fail(f"discovery failed: {type(error).__name__}: {error}")
