"""sam2_segmenter_node: camera images and prompts in, tracked masks and contours out.

One worker thread owns the model. The image callback only keeps the newest frame, so a
slow model never makes results lag behind the camera: frames it replaces are counted as
skipped. Prompts and service requests become jobs in a bounded queue that the worker runs
between frames (see work_queue.py).

What the node promises: every output describes exactly the frame whose header it carries
(the tracker's newest frame and the ring of recent frames advance together, or not at all);
no single message, flood or transition can exhaust, stall or kill it (limits on sizes and on
queued requests); every request gets one true answer (a refused or failed request changed
nothing, a cancelled one is never applied later).
"""
from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rclpy.service import Service
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sam2_ros.core.encoding import encode, for_prompts
from sam2_ros.core.everything import UNKNOWN, Everything, EverythingPass, EverythingSettings, novel
from sam2_ros.core.frames import FrameNotKept, FrameRing, RecentFrame, stamp_text
from sam2_ros.core.model import CheckpointError, load_model
from sam2_ros.core.prompts import ASSIGN_NEW_ID, Prompt, PromptError, rescale, validate
from sam2_ros.core.segmenter import FrameNotCached, Segmenter
from sam2_ros.core.tracker import (
    HOLE_FILLING,
    HOLE_FILLING_NOTE,
    StreamingTracker,
    TrackerError,
    check_trackable,
    first_free_id,
)
from sam2_ros.ros import params as P
from sam2_ros.ros import vision
from sam2_ros.ros.clicks import click_prompt, from_pixel_click, in_camera_frame, project
from sam2_ros.ros.conversions import ImageError, ImageTooLarge, compressed_to_rgb, image_to_rgb
from sam2_ros.ros.depth import DepthInput, DepthScene, NoDepth
from sam2_ros.ros.process import ProcessTuning
from sam2_ros.ros.prompt_msgs import Detections, from_detections, from_prompt_msg, stamp_ns
from sam2_ros.ros.results import FrameMismatch, ResultBuilder, label_image, overlay_image, result_message
from sam2_ros.ros.spatial import cloud_message, marker_array
from sam2_ros.ros.work_queue import Job, Refused, WorkQueue
from sam2_ros_interfaces.msg import Prompt as PromptMsg
from sam2_ros_interfaces.msg import SegmentationResult
from sam2_ros_interfaces.srv import AddObjects, RemoveObject, Segment, SegmentEverything

try:  # vision_msgs is optional: detector boxes become prompts where it is installed
    from vision_msgs.msg import Detection2DArray
except ImportError:
    Detection2DArray = None
try:  # tf2 is optional: with it, 3-D clicks in any frame are moved into the camera's optical frame
    import tf2_ros
except ImportError:
    tf2_ros = None

SERVICE_DRAIN_S = 5.0  # at cleanup, how long answers already in flight may take

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


@dataclass(frozen=True)
class InForce:
    """Image mode: a prompt applied to every frame, in the pixels of the frame it was given on."""

    prompt: Prompt
    image_hw: tuple[int, int]
    from_detector: bool = False


class Stats:
    """Counters and recent timings for /diagnostics."""

    def __init__(self) -> None:
        self.received = self.processed = self.skipped = self.rejected = self.failed = 0
        self.refused: Counter[str] = Counter()
        self.with_3d = 0
        self.discovery_passes = self.discovered = 0
        self.discovery_ms: deque[float] = deque(maxlen=20)
        self.no_depth: Counter[str] = Counter()
        self.latency_ms: deque[float] = deque(maxlen=200)
        self.model_ms: deque[float] = deque(maxlen=200)
        self.last_error = ""
        self.lock = threading.Lock()

    @staticmethod
    def percentile(values, q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")


class Sam2SegmenterNode(LifecycleNode):
    """The lifecycle node: configure loads SAM 2, activate starts processing.

    It leaves the process as it found it; `tuning` (main()'s) is told when a model is loaded
    or released, for process-wide tuning that only the process owner may do.
    """

    def __init__(self, *, tuning: ProcessTuning | None = None, **kwargs) -> None:
        super().__init__("sam2_segmenter_node", **kwargs)
        self._tuning = tuning
        self._objects_lock = threading.Lock()  # held while object ids change or are checked
        for param in P.PARAMS:
            self.declare_parameter(param.name, param.default, param.descriptor())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.stats = Stats()
        self.model = None
        self.finished = threading.Event()  # set by the shutdown transition: the process should exit
        self._config: P.NodeConfig | None = None
        self._tracker: StreamingTracker | None = None
        self._segmenter: Segmenter | None = None
        self._ring: FrameRing | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_force: dict[int, InForce] = {}
        self._arrivals = itertools.count()
        self._last_detections = time.monotonic()
        self._camera_info: CameraInfo | None = None
        self._depth = DepthInput()
        self._labels_sent = None  # the label map last sent on ~/label_info
        self._discovery: EverythingPass | None = None  # a segment-everything run spread over frames
        self._discovery_source: RecentFrame | None = None  # the frame it runs on
        self._discovered_at = 0.0
        self._tf_buffer = self._tf_listener = None  # tf2, where installed
        defaults = P.DEFAULTS
        self._queue = WorkQueue(defaults["max_queued_requests"], defaults["requests_per_frame"])
        self._worker: threading.Thread | None = None
        self._endpoints: list = []  # subscriptions and timers of the active state
        self._request_services: list[Service] = []  # from configure to cleanup
        self._calls_in_flight = 0
        self._calls_done = threading.Condition()
        self._pubs: dict = {}
        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ----- parameters -----
    def _values(self) -> dict:
        return {param.name: self.get_parameter(param.name).value for param in P.PARAMS}

    def _on_set_parameters(self, changes) -> P.SetParametersResult:
        """Validate run-time changes; a change the objects in hand cannot follow is refused."""
        values = {**self._values(), **{p.name: p.value for p in changes}}
        try:
            config = P.validate(values)
            with self._objects_lock:
                ids = self._object_ids()
                if config.values["mode"] != self._values()["mode"] and ids:
                    raise ValueError("cannot change mode while objects are tracked: call ~/reset first")
                limit = 255 if config.values["mask_encoding"] == "mono8" else 65535
                if any(i > limit for i in ids):
                    raise ValueError(f"object ids {sorted(i for i in ids if i > limit)} do not fit a "
                                     f"{config.values['mask_encoding']} label image: remove them first")
                if len(ids) > config.values["max_objects"]:
                    raise ValueError(f"{len(ids)} objects are tracked, more than max_objects "
                                     f"{config.values['max_objects']}: remove some first")
                if self._config is not None:
                    self._config = config
                    if self._tracker is not None:
                        self._tracker.max_objects = config.values["max_objects"]
                        self._tracker.batch_objects = config.values["batch_objects"]
                self._queue.max_jobs = config.values["max_queued_requests"]
                self._queue.jobs_per_frame = config.values["requests_per_frame"]
        except ValueError as error:
            return P.refuse_or_accept(error)
        return P.refuse_or_accept(None)

    def _object_ids(self) -> set[int]:
        return set(self._in_force) | set(self._tracker.objects if self._tracker else ())

    # ----- lifecycle -----
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._config = P.validate(self._values())
            self.model = load_model(self._config.model_spec)
        except (CheckpointError, ValueError) as error:
            self.get_logger().error(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        v = self._config.values
        self._tracker = StreamingTracker(self.model, max_objects=v["max_objects"],
                                         max_cond_frames=v["max_cond_frames"], batch_objects=v["batch_objects"])
        self._segmenter = Segmenter(self.model, cache_size=1)  # one-off images only: frames live in _ring
        self._ring = FrameRing(v["recent_frames"])
        self._queue.max_jobs, self._queue.jobs_per_frame = v["max_queued_requests"], v["requests_per_frame"]
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="sam2_describe")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {
            "result": self.create_publisher(SegmentationResult, "~/result", reliable),
            "mask": self.create_publisher(Image, "~/mask", reliable),
            "overlay": self.create_publisher(Image, "~/overlay", reliable),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", 10),
        }
        if v["depth"]:
            self._pubs["points"] = self.create_publisher(PointCloud2, "~/points", reliable)
            self._pubs["markers"] = self.create_publisher(MarkerArray, "~/markers", reliable)
        if vision.available():
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._pubs["detections"] = self.create_publisher(vision.Detection2DArray, "~/detections", reliable)
            self._pubs["label_info"] = self.create_publisher(vision.LabelInfo, "~/label_info", latched)
            self._labels_sent = None
            if v["depth"]:
                self._pubs["detections_3d"] = self.create_publisher(vision.Detection3DArray, "~/detections_3d",
                                                                    reliable)
        # Services live from configure to cleanup: a call that races deactivate is answered
        # ("node deactivated"), and one made while inactive is refused at once, never left hanging.
        services = ReentrantCallbackGroup()
        self._request_services = [
            self.create_service(Segment, "~/segment", self._segment_srv, callback_group=services),
            self.create_service(AddObjects, "~/add_objects", self._add_objects_srv, callback_group=services),
            self.create_service(RemoveObject, "~/remove_object", self._remove_object_srv,
                                callback_group=services),
            self.create_service(Trigger, "~/reset", self._reset_srv, callback_group=services),
            self.create_service(SegmentEverything, "~/segment_everything", self._segment_everything_srv,
                                callback_group=services),
        ]
        if tf2_ros is not None and self._tf_buffer is None:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        if self._tuning is not None:
            self._tuning.model_loaded()
        self.get_logger().info(f"loaded {self.model.spec.name} on {self.model.device} at input size "
                               f"{self.model.image_size}, mode {v['mode']}")
        if not HOLE_FILLING:
            self.get_logger().info(HOLE_FILLING_NOTE, once=True)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        v = self._config.values
        images, services = MutuallyExclusiveCallbackGroup(), ReentrantCallbackGroup()
        reliability = (qos_profile_sensor_data.reliability if v["image_qos"] == "sensor_data"
                       else ReliabilityPolicy.RELIABLE)
        qos = QoSProfile(depth=v["image_qos_depth"], reliability=reliability)
        image_type, topic = (CompressedImage, "image/compressed") if v["compressed"] else (Image, "image")
        self._queue.open()
        self._worker = threading.Thread(target=self._work, name="sam2_worker", daemon=True)
        self._worker.start()
        self._endpoints = [
            # raw: only the frames the worker takes are deserialised, not every camera frame
            self.create_subscription(image_type, topic, self._image_cb, qos, callback_group=images, raw=True),
            self.create_subscription(PromptMsg, "prompt", self._prompt_cb, 10, callback_group=services),
            self.create_subscription(PointStamped, "clicked_point", self._clicked_point_cb, 10,
                                     callback_group=services),
            self.create_subscription(Point, "clicked_pixel", self._clicked_pixel_cb, 10, callback_group=services),
            self.create_subscription(CameraInfo, "camera_info", self._camera_info_cb, qos_profile_sensor_data,
                                     callback_group=services),
            self.create_timer(1.0, self._tick, callback_group=services),
        ]
        if Detection2DArray is not None:
            self._endpoints.append(self.create_subscription(
                Detection2DArray, "detections", self._detections_cb, 10, callback_group=services))
        if v["depth"]:
            self._depth = DepthInput()
            depth_group = MutuallyExclusiveCallbackGroup()
            self._endpoints += [
                self.create_subscription(Image, "depth", self._depth.add_depth, qos_profile_sensor_data,
                                         callback_group=depth_group),
                self.create_subscription(CameraInfo, "depth/camera_info", self._depth.set_depth_info,
                                         qos_profile_sensor_data, callback_group=depth_group),
            ]
        self.get_logger().info(f"active: listening on {self.resolve_topic_name(topic)}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop("node deactivated")
        self._release_cuda_cache()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop("node shutting down")
        self._release()
        self.finished.set()
        return TransitionCallbackReturn.SUCCESS

    def stop(self, reason: str = "node stopped") -> None:
        """Stop the worker after its current item; every queued request is answered with `reason`."""
        answered = self._queue.close(reason)
        if answered:
            self.get_logger().info(f"{reason}: answered {answered} queued request(s) with failure")
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        for endpoint in self._endpoints:
            if isinstance(endpoint, Timer):
                self.destroy_timer(endpoint)
            else:
                self.destroy_subscription(endpoint)
        self._endpoints = []

    def destroy_node(self) -> None:
        """Stop the worker and free the model and its threads, whatever state the node is in."""
        self.stop("node destroyed")
        self._release()
        super().destroy_node()

    def _release(self) -> None:
        """Drop the model, services and publishers; on CUDA hand the memory back to the driver."""
        with self._calls_done:  # answers in flight still need their service
            self._calls_done.wait_for(lambda: self._calls_in_flight == 0, timeout=SERVICE_DRAIN_S)
            for service in self._request_services:
                self.destroy_service(service)
            self._request_services = []
        for publisher in self._pubs.values():
            self.destroy_publisher(publisher)
        self._pubs = {}
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.model = self._tracker = self._segmenter = self._ring = None
        self._discovery = self._discovery_source = None
        self._in_force.clear()
        if self._tuning is not None:
            self._tuning.model_released()
        self._release_cuda_cache()

    @staticmethod
    def _release_cuda_cache() -> None:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----- callbacks (never touch the model) -----
    def _image_cb(self, msg: bytes) -> None:
        replaced = self._queue.put_frame((next(self._arrivals), msg))
        with self.stats.lock:
            self.stats.received += 1
            self.stats.skipped += replaced

    def _prompt_cb(self, msg: PromptMsg) -> None:
        try:
            prompt = self._prompt(msg)
        except PromptError as error:
            self._reject(f"prompt refused: {error}", error)
            return
        self._submit_from_topic(lambda: self._apply([prompt], stamp_ns(msg.header)))

    def _clicked_pixel_cb(self, msg: Point) -> None:
        """rqt_image_view's click: a pixel of the newest frame (the message has no header)."""
        self._submit_from_topic(lambda: self._apply([from_pixel_click(msg)], 0))

    def _camera_info_cb(self, msg: CameraInfo) -> None:
        if self._camera_info is None and any(msg.d) and not any(msg.p):
            self.get_logger().warning("camera_info has distortion and no projection matrix: 3-D clicks are "
                                      "projected as if the image were rectified", once=True)
        if self._config.values["depth"] and any(msg.d):
            self.get_logger().info("camera_info has distortion coefficients: 3D assumes the colour and depth "
                                   "images are rectified (image_rect, aligned depth)", once=True)
        self._camera_info = msg
        self._depth.set_colour_info(msg)

    def _clicked_point_cb(self, msg: PointStamped) -> None:
        """RViz's Publish Point: a 3-D point, projected into the image with the camera info."""
        info = self._camera_info
        try:
            if info is None:
                raise PromptError("clicked point refused: no camera_info received yet (remap camera_info "
                                  "to the camera's, e.g. -r camera_info:=/camera/color/camera_info)")
            lookup = None if self._tf_buffer is None else self._lookup_transform
            u, v = project(in_camera_frame(msg, info, lookup), info)
        except PromptError as error:
            self._reject(f"clicked point refused: {error}", error)
            return
        click_hw = (info.height, info.width) if info.height and info.width else None
        self._submit_from_topic(lambda: self._apply([click_prompt(u, v)], stamp_ns(msg.header), click_hw))

    def _lookup_transform(self, target: str, source: str):
        try:
            return self._tf_buffer.lookup_transform(target, source, Time()).transform
        except Exception as error:  # tf2's lookup, connectivity and extrapolation errors
            raise PromptError(f"no transform from '{source}' to '{target}': {error}") from None

    def _detections_cb(self, msg) -> None:
        self._last_detections = time.monotonic()
        detections = from_detections(msg)
        for reason in detections.dropped:
            self._reject(f"detection dropped: {reason}", "bad detection")
        self._submit_from_topic(lambda: self._apply_detections(detections, stamp_ns(msg.header)))

    def _prompt(self, msg: PromptMsg) -> Prompt:
        v = self._config.values
        return from_prompt_msg(msg, v["max_prompt_points"], v["max_image_pixels"])

    def _submit_from_topic(self, run: Callable[[], object]) -> None:
        """Queue a request that no caller waits for; a full queue refuses it at once."""
        try:
            self._queue.submit(run)
        except Refused as error:
            self._reject(f"prompt refused: {error}", error)

    def _reject(self, message: str, kind: Exception | str) -> None:
        with self.stats.lock:
            self.stats.rejected += 1
            self.stats.refused[kind if isinstance(kind, str) else refusal_kind(kind)] += 1
            self.stats.last_error = message
        self.get_logger().warning(message, throttle_duration_sec=1.0)

    def _fail(self, message: str) -> None:
        if not self.context.ok():  # shutting down: publishers are gone, nothing failed
            return
        with self.stats.lock:
            self.stats.failed += 1
            self.stats.last_error = message
        self.get_logger().error(message, throttle_duration_sec=1.0)

    def _job_failed(self, error: Exception) -> None:
        if isinstance(error, REFUSED):
            self._reject(str(error), error)
        else:
            self._fail(f"request failed: {type(error).__name__}: {error}")

    # ----- services -----
    def _call(self, run: Callable[[], object], response, fill: Callable[[object], str]):
        """Queue `run` for the worker and answer once: its outcome, a refusal, or a cancellation.

        A request not started within request_timeout_s is cancelled, so the failure answered
        is true: it is never applied later. One already running is waited for.
        """
        with self._calls_done:
            self._calls_in_flight += 1
        try:
            future = self._queue.submit(run)
            timeout = self._config.values["request_timeout_s"] if self._config else P.DEFAULTS["request_timeout_s"]
            response.message, response.success = fill(self._outcome(future, timeout)), True
        except Refused as error:
            self._reject(f"request refused: {error}", error)
            response.success, response.message = False, str(error)
        except Exception as error:  # refusals and failures both become the answer's message
            response.success, response.message = False, str(error) or type(error).__name__
        finally:
            with self._calls_done:
                self._calls_in_flight -= 1
                self._calls_done.notify_all()
        return response

    def _outcome(self, future: Future, timeout: float):
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            if future.cancel():
                self._reject(f"request cancelled: not started within {timeout:.1f} s", "request cancelled")
                raise Refused(f"not applied: the node did not start this request within {timeout:.1f} s "
                              "(request_timeout_s); it was cancelled") from None
            return future.result()  # running: its own outcome is the true answer

    def _prompts(self, messages) -> list[Prompt]:
        return [self._prompt(p) for p in messages]

    def _segment_srv(self, request, response):
        try:
            prompts = self._prompts(request.prompts)
        except PromptError as error:
            response.success, response.message = False, str(error)
            return response
        image = request.image if (request.image.width or request.image.height) else None
        key = stamp_ns(request.prompts[0].header) if request.prompts else 0

        def done(result: SegmentationResult) -> str:
            response.result = result
            return f"segmented {len(result.objects)} object(s)"
        return self._call(lambda: self._segment_once(prompts, key, image), response, done)

    def _segment_everything_srv(self, request, response):
        defaults = self._everything_settings()
        settings = replace(
            defaults, points_per_side=request.points_per_side or defaults.points_per_side,
            pred_iou_thresh=request.pred_iou_thresh if request.pred_iou_thresh >= 0 else defaults.pred_iou_thresh,
            stability_score_thresh=(request.stability_score_thresh if request.stability_score_thresh >= 0
                                    else defaults.stability_score_thresh))
        try:
            settings.check()
        except ValueError as error:
            self._reject(f"segment_everything refused: {error}", "bad request")
            response.success, response.message = False, str(error)
            return response
        image = request.image if (request.image.width or request.image.height) else None

        def done(result: SegmentationResult) -> str:
            response.result = result
            return f"found {len(result.objects)} object(s)"
        return self._call(lambda: self._everything(settings, stamp_ns(request.header), image), response, done)

    def _add_objects_srv(self, request, response):
        try:
            prompts = self._prompts(request.prompts)
        except PromptError as error:
            response.success, response.message = False, str(error)
            return response
        key = stamp_ns(request.prompts[0].header) if request.prompts else 0

        def done(outcome) -> str:
            response.object_ids, response.result = outcome
            return f"applied prompts to object(s) {list(outcome[0])}"
        return self._call(lambda: self._apply(prompts, key), response, done)

    def _remove_object_srv(self, request, response):
        return self._call(lambda: self._remove(request.object_id), response,
                          lambda _: f"removed object {request.object_id}")

    def _reset_srv(self, request, response):
        return self._call(self._reset, response, lambda n: f"reset: forgot {n} object(s)")

    # ----- the worker -----
    def _work(self) -> None:
        while (item := self._queue.take()) is not None:
            if isinstance(item, Job):
                item.execute(self._job_failed)
                continue
            try:
                self._process(*item)
            except Exception as error:  # the worker must outlive any one frame
                self._fail(f"frame dropped: {type(error).__name__}: {error}")

    def _process(self, seq: int, raw: bytes) -> None:
        """Convert, encode once, track or segment, commit the frame, publish with its header."""
        config = self._config
        v = config.values
        try:
            msg = deserialize_message(raw, CompressedImage if v["compressed"] else Image)
            rgb = (compressed_to_rgb(msg, v["max_image_pixels"]) if v["compressed"]
                   else image_to_rgb(msg, v["max_image_pixels"]))
        except ImageError as error:
            self._reject(f"image dropped: {error}", error)
            return
        key = stamp_ns(msg.header)
        builder = ResultBuilder(msg.header, rgb.shape[:2], config.output, self._pool,
                                self._depth_for(key, rgb.shape[:2]))
        try:
            start = time.perf_counter()
            encoded = encode(self.model, rgb)
            kept = for_prompts(self.model, encoded)
            # The tracker and the ring advance together or not at all: everything that can fail
            # comes first, track() is all or nothing by itself, and the commit cannot fail.
            if v["mode"] == "track":
                result = self._tracker.track(rgb, encoded, on_object=builder.add)
                objects, decode_ms, dropped = result.objects, result.track_ms, result.dropped_cond_frames
            else:
                (objects, decode_ms), dropped = self._segment_in_force(encoded.image_hw, encoded), {}
                self._tracker.track(rgb, encoded)  # no objects: it only takes this frame as its newest
            frame = RecentFrame(seq, key, msg.header, rgb, kept, self._tracker.frame_index)
            self._ring.commit(frame)  # arrival numbers only grow
            model_ms = (time.perf_counter() - start) * 1e3
        except Exception as error:  # one bad frame is dropped, the next one is processed
            self._fail(f"model failed on frame {key}: {type(error).__name__}: {error}; frame dropped")
            return
        for object_id, frames in dropped.items():
            self.get_logger().info(f"object {object_id}: over max_cond_frames, dropped prompted frames {frames}")
        with self.stats.lock:
            self.stats.processed += 1
            self.stats.model_ms.append(model_ms)
        self._publish(frame, objects, builder, encode_ms=encoded.encode_ms, decode_ms=decode_ms)
        if v["mode"] == "track" and v["discover_period_s"] > 0:
            try:
                self._discover(frame)
            except Exception as error:  # discovery is extra: the stream goes on without it
                self._discovery = None
                self._fail(f"discovery failed: {type(error).__name__}: {error}")

    def _in_force_on(self, image_hw: tuple[int, int], entries) -> list[Prompt]:
        """Image mode: the prompts in force, moved to this frame's size; any outside it is skipped."""
        prompts = []
        for entry in entries:
            try:
                prompts.append(validate(rescale(entry.prompt, entry.image_hw, image_hw), image_hw))
            except PromptError as error:
                self._reject(f"object {entry.prompt.object_id} skipped on this frame: {error}", error)
        return prompts

    def _segment_in_force(self, image_hw, encoded, entries=None) -> tuple[list, float]:
        prompts = self._in_force_on(image_hw, (self._in_force if entries is None else entries).values())
        if not prompts:
            return [], 0.0
        segmentation = self._segmenter.predict(prompts, encoded)
        return segmentation.objects, segmentation.decode_ms

    def _publish(self, frame: RecentFrame, objects, builder: ResultBuilder | None = None,
                 **timings: float) -> SegmentationResult:
        """Publish the result first (what consumers wait for), then the label image and overlay.

        Each is checked against the frame whose header it carries (every mask of its size).
        """
        start = time.perf_counter()
        settings = self._config.output
        hw = frame.image_hw
        builder = builder or ResultBuilder(frame.header, hw, settings, self._pool,
                                           self._depth_for(frame.stamp_ns, hw))
        result = builder.build(objects, **timings)
        if result.header is not frame.header or (result.height, result.width) != hw:
            raise FrameMismatch(f"result for a {result.width}x{result.height} frame would carry the header "
                                f"of a {hw[1]}x{hw[0]} frame: withheld")
        result.postprocess_ms = (time.perf_counter() - start) * 1e3
        if frame.stamp_ns:
            result.latency_ms = (self.get_clock().now().nanoseconds - frame.stamp_ns) / 1e6
            with self.stats.lock:
                self.stats.latency_ms.append(result.latency_ms)
        self._pubs["result"].publish(result)
        self._pubs["mask"].publish(label_image(objects, frame.header, hw, settings))
        if self._config.values["publish_overlay"] and self._pubs["overlay"].get_subscription_count():
            self._pubs["overlay"].publish(overlay_image(frame.rgb, objects, frame.header, settings))
        self._publish_standard(result, builder, frame)
        return result

    def _depth_for(self, stamp: int, hw: tuple[int, int]) -> Callable[[], DepthScene | None] | None:
        """Pair a depth frame with colour frame `stamp` when asked; None when 3D is off."""
        v = self._config.values
        if not v["depth"]:
            return None

        def pair() -> DepthScene | None:
            try:
                scene = self._depth.pair(stamp, hw, round(v["depth_max_age_ms"] * 1e6), v["max_image_pixels"])
            except NoDepth as error:
                with self.stats.lock:
                    self.stats.no_depth[error.kind] += 1
                if error.detail:
                    self.get_logger().warning(f"frame without 3D: {error}", throttle_duration_sec=5.0)
                return None
            with self.stats.lock:
                self.stats.with_3d += 1
            return scene
        return pair

    def _publish_standard(self, result: SegmentationResult, builder: ResultBuilder, frame: RecentFrame) -> None:
        """Publish the 3D outputs (cloud and markers for whoever listens) and the vision_msgs ones."""
        v = self._config.values
        pubs = self._pubs
        if v["depth"] and builder.scene is not None:
            if pubs["points"].get_subscription_count():
                pubs["points"].publish(cloud_message(builder.scene, builder.solids, v["cloud_voxel_size"],
                                                     frame.rgb if v["cloud_rgb"] else None))
            if pubs["markers"].get_subscription_count():
                pubs["markers"].publish(marker_array(result))
            if "detections_3d" in pubs and pubs["detections_3d"].get_subscription_count():
                pubs["detections_3d"].publish(vision.detection_3d_array(result))
        if "detections" in pubs:
            if pubs["detections"].get_subscription_count():
                pubs["detections"].publish(vision.detection_2d_array(result))
            labels = vision.label_map(result)
            if labels != self._labels_sent:
                pubs["label_info"].publish(vision.label_info(result.header, labels, v["score_threshold"]))
                self._labels_sent = labels

    # ----- jobs run on the worker -----
    def _newest_tracked(self) -> RecentFrame:
        """Return the newest frame, which must be the tracker's current one."""
        newest = self._ring.newest()
        if newest.tracker_index != self._tracker.frame_index:
            raise FrameMismatch(f"the tracker is on frame {self._tracker.frame_index} but the newest kept "
                                f"frame is {newest.tracker_index}: prompt not applied")
        return newest

    def _check(self, prompts: list[Prompt], hw: tuple[int, int], tracked: set[int]) -> list[Prompt]:
        """Validate every prompt before any is applied: all or nothing."""
        v = self._config.values
        checked = [validate(prompt, hw) for prompt in prompts]
        limit = 255 if v["mask_encoding"] == "mono8" else 65535
        for prompt in checked:
            if prompt.object_id > limit:
                raise PromptError(f"object id {prompt.object_id} does not fit the "
                                  f"{v['mask_encoding']} label image (max {limit})")
            if v["mode"] == "track":
                check_trackable(prompt)
        new = {p.object_id for p in checked if p.object_id != ASSIGN_NEW_ID and p.object_id not in tracked}
        new_count = len(new) + sum(1 for p in checked if p.object_id == ASSIGN_NEW_ID)
        if len(tracked) + new_count > v["max_objects"]:
            raise TrackerError(f"cannot add {new_count} object(s): {len(tracked)} tracked, max_objects "
                               f"{v['max_objects']}")
        return checked

    def _find(self, key: int):
        return self._ring.find(key, round(self._config.values["prompt_max_age_s"] * 1e9))

    def _apply(self, prompts: list[Prompt], key: int, prompts_hw: tuple[int, int] | None = None):
        """Add or correct objects, all or nothing; publish and return (object ids, result).

        `prompts_hw`: the size of the image the prompts' pixels belong to, when it is not the
        frame's (a click projected with a camera info of another resolution).
        """
        with self._objects_lock:
            source = self._find(key)
            if prompts_hw is not None:
                prompts = [rescale(p, prompts_hw, source.image_hw) for p in prompts]
            if self._config.values["mode"] == "track":
                return self._apply_tracked(prompts, source)
            return self._apply_in_force(prompts, source)

    def _apply_tracked(self, prompts: list[Prompt], source: RecentFrame):
        newest = self._newest_tracked()
        checked = self._check(prompts, source.image_hw, set(self._tracker.objects))
        if source is not newest:
            self.get_logger().info(f"prompt for frame {stamp_text(source.stamp_ns)} applied to the newest "
                                   f"frame {stamp_text(newest.stamp_ns)}: tracking only moves forward")
            checked = [rescale(p, source.image_hw, newest.image_hw) for p in checked]
        ids = []
        with self._tracker.transaction():
            for prompt in checked:
                ids.append(self._tracker.add_prompt(prompt)[0])
        return ids, self._publish(newest, self._tracker.current())

    def _apply_in_force(self, prompts: list[Prompt], source: RecentFrame, detector: bool = False):
        in_force = dict(self._in_force)
        checked = self._check(prompts, source.image_hw, set(in_force))
        ids = []
        for prompt in checked:
            object_id = prompt.object_id if prompt.object_id != ASSIGN_NEW_ID else first_free_id(in_force)
            in_force[object_id] = InForce(replace(prompt, object_id=object_id), source.image_hw, detector)
            ids.append(object_id)
        objects, _ = self._segment_in_force(source.image_hw, source.encoded, in_force)
        self._in_force = in_force  # only once SAM 2 took them all
        return ids, self._publish(source, objects)

    def _apply_detections(self, detections: Detections, key: int):
        """Detector boxes: bad ones dropped one by one, the best-scoring kept up to max_objects.

        Track mode seeds objects only where no tracked mask already lies, and publishes nothing
        when nothing was added. Image mode replaces the detector's earlier boxes (an empty
        array clears them) and keeps the user's prompts.
        """
        with self._objects_lock:
            source = self._find(key)
            track = self._config.values["mode"] == "track"
            target = self._newest_tracked() if track else source
            boxes = []
            for prompt in detections.prompts:
                try:
                    boxes.append(rescale(validate(prompt, source.image_hw), source.image_hw, target.image_hw))
                except PromptError as error:
                    self._reject(f"detection dropped: {error}", "bad detection")
            if track:
                boxes = [box for box in boxes if not self._covered(box)]
                kept = set(self._tracker.objects)
            else:
                kept = {i for i, e in self._in_force.items() if not e.from_detector}
                if not boxes and len(kept) == len(self._in_force):
                    return None  # no detector boxes before or now: nothing changes
            room = self._config.values["max_objects"] - len(kept)
            if len(boxes) > room:
                self._reject(f"{len(boxes) - room} detection(s) over max_objects "
                             f"{self._config.values['max_objects']} dropped, the best-scoring kept",
                             "bad detection")
                boxes = boxes[:max(room, 0)]
            if track:
                return self._apply_tracked(boxes, target) if boxes else None
            self._in_force = {i: e for i, e in self._in_force.items() if i in kept}
            return self._apply_in_force(boxes, target, detector=True)

    def _covered(self, prompt: Prompt) -> bool:
        """Whether a box lies mostly on an object already tracked on the newest frame."""
        x0, y0, x1, y1 = (max(int(round(v)), 0) for v in prompt.box)
        return any(obj.mask[y0:y1, x0:x1].size and obj.mask[y0:y1, x0:x1].mean() > 0.5
                   for obj in self._tracker.current())

    def _segment_once(self, prompts: list[Prompt], key: int, image: Image | None) -> SegmentationResult:
        """Segment now: a one-off answer that changes no tracked object."""
        numbered = number(prompts)
        v = self._config.values
        if image is not None:
            rgb = image_to_rgb(image, v["max_image_pixels"])
            segmentation = self._segmenter.segment(rgb, numbered)
            return result_message(segmentation.objects, image.header, rgb.shape[:2], self._config.output,
                                  pool=self._pool, encode_ms=segmentation.encode_ms,
                                  decode_ms=segmentation.decode_ms)
        frame = self._find(key)
        segmentation = self._segmenter.predict(numbered, frame.encoded)
        return result_message(segmentation.objects, frame.header, frame.image_hw, self._config.output,
                              pool=self._pool, decode_ms=segmentation.decode_ms)

    def _everything(self, settings: EverythingSettings, key: int, image: Image | None) -> SegmentationResult:
        """Every mask SAM 2 finds on a kept frame (its one encoding reused) or on a given image."""
        if image is not None:
            rgb = image_to_rgb(image, self._config.values["max_image_pixels"])
            encoded, header = encode(self.model, rgb), image.header
        else:
            frame = self._find(key)
            encoded, header = frame.encoded, frame.header
        proposals, decode_ms = Everything(self.model, settings).propose(encoded)
        return result_message(proposals, header, encoded.image_hw, self._config.output, pool=self._pool,
                              encode_ms=encoded.encode_ms if image is not None else 0.0, decode_ms=decode_ms)

    def _everything_settings(self) -> EverythingSettings:
        v = self._config.values
        return EverythingSettings(points_per_side=v["everything_points_per_side"],
                                  points_per_batch=v["everything_points_per_batch"],
                                  pred_iou_thresh=v["everything_pred_iou_thresh"],
                                  stability_score_thresh=v["everything_stability_score_thresh"],
                                  box_nms_thresh=v["everything_box_nms_thresh"],
                                  min_mask_region_area=v["everything_min_region_area"])

    def _discover(self, frame: RecentFrame) -> None:
        """Track mode: after a frame, a few point batches of segment everything; when done, track what is new.

        A run starts on a processed frame every discover_period_s while there is room for objects,
        decodes discover_batches_per_frame batches after each frame, and its proposals become
        objects labelled "unknown" on the newest frame (scaled, if the size changed).
        """
        v = self._config.values
        if self._discovery is None:
            room = v["max_objects"] - len(self._tracker.objects)
            if room <= 0 or time.monotonic() - self._discovered_at < v["discover_period_s"]:
                return
            self._discovery = Everything(self.model, self._everything_settings()).start(frame.encoded)
            self._discovery_source = frame
        proposals = self._discovery.step(v["discover_batches_per_frame"])
        if proposals is None:
            return
        run, source, self._discovery = self._discovery, self._discovery_source, None
        self._discovered_at = time.monotonic()
        with self._objects_lock:
            taken = [obj.mask for obj in self._tracker.current() if obj.mask.any()]
            new = novel(proposals, taken, v["discover_min_area"], v["discover_max_overlap"],
                        v["max_objects"] - len(self._tracker.objects))
            if new:
                self._apply_tracked([Prompt(object_id=ASSIGN_NEW_ID, label=UNKNOWN, mask=p.mask) for p in new], source)
        with self.stats.lock:
            self.stats.discovery_passes += 1
            self.stats.discovered += len(new)
            self.stats.discovery_ms.append(run.ms)

    def _remove(self, object_id: int) -> None:
        with self._objects_lock:
            if self._config.values["mode"] == "track":
                self._tracker.remove(object_id)
            elif self._in_force.pop(object_id, None) is None:
                raise TrackerError(f"no object with id {object_id} (ids: {sorted(self._in_force) or 'none'})")

    def _reset(self) -> int:
        with self._objects_lock:
            count = len(self._tracker.objects) + len(self._in_force)
            self._tracker.reset()
            self._in_force.clear()
            return count

    def _tick(self) -> None:
        """Once a second: diagnostics, and image mode's detector boxes expire when detections stop."""
        timeout = self._config.values["detections_timeout_s"]
        stale = timeout and time.monotonic() - self._last_detections > timeout
        if stale and any(e.from_detector for e in self._in_force.values()):
            self._last_detections = time.monotonic()
            self._submit_from_topic(lambda: self._apply_detections(Detections([], []), 0))
        self._publish_diagnostics()

    # ----- diagnostics -----
    def _publish_diagnostics(self) -> None:
        """Counters and timings; WARN only when the model or the node failed, not for bad input."""
        s = self.stats
        with s.lock:
            values = {
                "frames received": s.received, "frames processed": s.processed, "frames skipped": s.skipped,
                "inputs rejected": s.rejected, "model failures": s.failed,
                **{f"refused: {kind}": count for kind, count in sorted(s.refused.items())},
                **({"frames with 3D": s.with_3d} if self._config and self._config.values["depth"] else {}),
                **{f"no depth: {kind}": count for kind, count in sorted(s.no_depth.items())},
                "requests queued": self._queue.pending(),
                "latency p50 ms": s.percentile(s.latency_ms, 50),
                "latency p95 ms": s.percentile(s.latency_ms, 95),
                "model p50 ms": s.percentile(s.model_ms, 50), "device": self.model.device if self.model else "",
                "objects": len(self._object_ids()),
                **({"discovery passes": s.discovery_passes, "objects discovered": s.discovered,
                    "discovery ms p50": s.percentile(s.discovery_ms, 50)}
                   if self._config and self._config.values["discover_period_s"] > 0 else {}),
                "last error": s.last_error,
            }
        level = DiagnosticStatus.WARN if s.failed else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: processing",
                                  message="model failures seen" if s.failed else "ok",
                                  hardware_id=str(values["device"]),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pubs["diagnostics"].publish(array)


def number(prompts: list[Prompt]) -> list[Prompt]:
    """Give prompts asking for a new id the smallest ids no other prompt names; refuse repeats."""
    explicit = [p.object_id for p in prompts if p.object_id != ASSIGN_NEW_ID]
    repeated = sorted({i for i in explicit if explicit.count(i) > 1})
    if repeated:
        raise PromptError(f"object ids {repeated} appear more than once in one request")
    used, numbered = set(explicit), []
    for prompt in prompts:
        if prompt.object_id == ASSIGN_NEW_ID:
            prompt = replace(prompt, object_id=first_free_id(used))
            used.add(prompt.object_id)
        numbered.append(prompt)
    return numbered


def spin(executor: Executor, until: Callable[[], bool] | None = None) -> None:
    """Spin until the executor or the context shuts down (or `until()`), outliving an rclpy race.

    A transition that destroys endpoints while the executor builds its wait set makes rclpy
    raise InvalidHandle out of spin() (ros2/rclpy#1206, #1142); the executor recovers on
    the next call, so spinning resumes instead of leaving the node deaf. With `until`, the
    executor wakes every 0.1 s to ask it (and lets Python run signal handlers).
    """
    while True:
        try:
            if until is None:
                executor.spin()
                return
            while executor.context.ok() and not until():
                executor.spin_once(timeout_sec=0.1)
            return
        except InvalidHandle:
            continue
        except ExternalShutdownException:
            return


def usage() -> str:
    """Return what `sam2_segmenter_node --help` prints: how to run it, its topics and parameters."""
    lines = [
        "usage: ros2 run sam2_ros sam2_segmenter_node --ros-args -p checkpoint:=FILE.pt [-p NAME:=VALUE ...]",
        "           [--params-file sam2_segmenter.yaml] [-r image:=/camera/image_raw] [-r __ns:=/left]",
        "",
        "SAM 2 on a camera stream: prompts (prompt, clicked_point, clicked_pixel, detections, ~/add_objects)",
        "in; tracked masks out on ~/result, ~/mask, ~/overlay and /diagnostics. See README.md.",
        "",
        "parameters:",
    ]
    for param in P.PARAMS:
        fixed = " (read-only)" if param.read_only else ""
        lines.append(f"  {param.name:<22} {param.default!r:<20} {param.description}{fixed}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Spin the node until Ctrl-C, SIGTERM or a lifecycle shutdown, then exit 0.

    The process owns the signals: on Ctrl-C the worker stops before the ROS context goes,
    so no frame in flight publishes on a dead context.
    """
    argv = sys.argv if args is None else args
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if {"-h", "--help"} & set(own):
        print(usage())
        return 0
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    executor = MultiThreadedExecutor(num_threads=4)  # services wait on the worker; keep threads for the rest
    try:
        with ProcessTuning() as tuning:
            try:
                node = Sam2SegmenterNode(tuning=tuning)
                executor.add_node(node)
                spin(executor, until=lambda: stop.is_set() or node.finished.is_set())
            finally:
                if node is not None:
                    node.stop("node exiting")
                executor.shutdown()
                if node is not None:
                    node.destroy_node()
                rclpy.try_shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
