"""sam2_segmenter_node: camera images and prompts in, tracked masks and contours out.

One worker thread owns the model. The image callback only keeps the newest frame, so a
slow model never makes results lag behind the camera: frames it replaces are counted as
skipped. Prompts and service requests become jobs that the worker runs between frames.
"""
from __future__ import annotations

import gc
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rclpy.service import Service
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from sam2_ros.core.encoding import encode
from sam2_ros.core.model import CheckpointError, load_model
from sam2_ros.core.prompts import ASSIGN_NEW_ID, Prompt, PromptError, validate
from sam2_ros.core.segmenter import FrameNotCached, Segmenter
from sam2_ros.core.tracker import StreamingTracker, TrackerError, first_free_id
from sam2_ros.ros import params as P
from sam2_ros.ros.conversions import ImageError, compressed_to_rgb, image_to_rgb
from sam2_ros.ros.prompt_msgs import from_clicked_point, from_detections, from_prompt_msg, stamp_ns
from sam2_ros.ros.results import ResultBuilder, label_image, overlay_image, result_message
from sam2_ros_interfaces.msg import Prompt as PromptMsg
from sam2_ros_interfaces.msg import SegmentationResult
from sam2_ros_interfaces.srv import AddObjects, RemoveObject, Segment

try:  # vision_msgs is optional: detector boxes become prompts where it is installed
    from vision_msgs.msg import Detection2DArray
except ImportError:
    Detection2DArray = None

REFUSED = (PromptError, TrackerError, FrameNotCached, ImageError, ValueError)
SERVICE_TIMEOUT_S = 60.0
GIL_SWITCH_INTERVAL_S = 0.0001


@dataclass
class RecentFrame:
    """A processed frame kept so that prompts stamped for it can refer to it."""

    header: Header
    rgb: np.ndarray


class Stats:
    """Counters and recent timings for /diagnostics."""

    def __init__(self) -> None:
        self.received = self.processed = self.skipped = self.rejected = self.failed = 0
        self.latency_ms: deque[float] = deque(maxlen=200)
        self.model_ms: deque[float] = deque(maxlen=200)
        self.last_error = ""

    @staticmethod
    def percentile(values, q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")


class Sam2SegmenterNode(LifecycleNode):
    """The lifecycle node: configure loads SAM 2, activate starts processing."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sam2_segmenter_node", **kwargs)
        for param in P.PARAMS:
            self.declare_parameter(param.name, param.default, param.descriptor())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.stats = Stats()
        self.model = None
        self._config: P.NodeConfig | None = None
        self._tracker: StreamingTracker | None = None
        self._segmenter: Segmenter | None = None
        self._in_force: dict[int, Prompt] = {}  # image mode: prompts applied to every frame
        self._recent: OrderedDict[int, RecentFrame] = OrderedDict()
        self._wake = threading.Condition()
        self._latest = None
        self._jobs: list[Callable[[], None]] = []
        self._stop = False
        self._worker: threading.Thread | None = None
        self._endpoints: list = []  # subscriptions, services and timers of the active state
        self._pubs: dict = {}
        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ----- parameters -----
    def _values(self) -> dict:
        return {param.name: self.get_parameter(param.name).value for param in P.PARAMS}

    def _on_set_parameters(self, changes) -> P.SetParametersResult:
        """Validate run-time changes; a mode switch with objects in hand is refused."""
        values = {**self._values(), **{p.name: p.value for p in changes}}
        try:
            config = P.validate(values)
            if config.values["mode"] != self._values()["mode"] and self._has_objects():
                raise ValueError("cannot change mode while objects are tracked: call ~/reset first")
        except ValueError as error:
            return P.refuse_or_accept(error)
        if self._config is not None:
            self._config = config
            if self._tracker is not None:
                self._tracker.max_objects = config.values["max_objects"]
        return P.refuse_or_accept(None)

    def _has_objects(self) -> bool:
        return bool(self._in_force) or bool(self._tracker and self._tracker.objects)

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
                                         max_cond_frames=v["max_cond_frames"])
        self._segmenter = Segmenter(self.model, cache_size=v["recent_frames"])
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {
            "result": self.create_publisher(SegmentationResult, "~/result", reliable),
            "mask": self.create_publisher(Image, "~/mask", reliable),
            "overlay": self.create_publisher(Image, "~/overlay", reliable),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", 10),
        }
        # The model's many long-lived Python objects leave the collector's view: full collections
        # during the stream then take milliseconds instead of stalling the worker for hundreds.
        gc.collect()
        gc.freeze()
        self.get_logger().info(f"loaded {self.model.spec.name} on {self.model.device} at input size "
                               f"{self.model.image_size}, mode {v['mode']}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        v = self._config.values
        images, services = MutuallyExclusiveCallbackGroup(), ReentrantCallbackGroup()
        reliability = (qos_profile_sensor_data.reliability if v["image_qos"] == "sensor_data"
                       else ReliabilityPolicy.RELIABLE)
        qos = QoSProfile(depth=v["image_qos_depth"], reliability=reliability)
        image_type, topic = (CompressedImage, "image/compressed") if v["compressed"] else (Image, "image")
        self._endpoints = [
            # raw: only the frames the worker takes are deserialised, not every camera frame
            self.create_subscription(image_type, topic, self._image_cb, qos, callback_group=images, raw=True),
            self.create_subscription(PromptMsg, "prompt", self._prompt_cb, 10, callback_group=services),
            self.create_subscription(PointStamped, "clicked_point", self._clicked_point_cb, 10,
                                     callback_group=services),
            self.create_service(Segment, "~/segment", self._segment_srv, callback_group=services),
            self.create_service(AddObjects, "~/add_objects", self._add_objects_srv,
                                callback_group=services),
            self.create_service(RemoveObject, "~/remove_object", self._remove_object_srv,
                                callback_group=services),
            self.create_service(Trigger, "~/reset", self._reset_srv, callback_group=services),
            self.create_timer(1.0, self._publish_diagnostics, callback_group=services),
        ]
        if Detection2DArray is not None:
            self._endpoints.append(self.create_subscription(
                Detection2DArray, "detections", self._detections_cb, 10, callback_group=services))
        self._stop = False
        # The worker hands the GIL back around every torch op. At Python's default 5 ms switch
        # interval each op can then wait that long behind the executor threads' Python, which
        # on a busy CPU stretches one frame by seconds; a short interval keeps it to the model's time.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        self._worker = threading.Thread(target=self._work, name="sam2_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: listening on {self.resolve_topic_name(topic)}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release_cuda_cache()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        for endpoint in self._endpoints:
            if isinstance(endpoint, Timer):
                self.destroy_timer(endpoint)
            elif isinstance(endpoint, Service):
                self.destroy_service(endpoint)
            else:
                self.destroy_subscription(endpoint)
        self._endpoints = []
        self._latest, self._jobs = None, []

    def _release(self) -> None:
        """Drop the model and every publisher; on CUDA hand the memory back to the driver."""
        for publisher in self._pubs.values():
            self.destroy_publisher(publisher)
        self._pubs = {}
        self.model = self._tracker = self._segmenter = None
        gc.unfreeze()  # the released model can be collected
        self._in_force.clear()
        self._recent.clear()
        self._release_cuda_cache()

    @staticmethod
    def _release_cuda_cache() -> None:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----- callbacks (never touch the model) -----
    def _image_cb(self, msg: bytes) -> None:
        with self._wake:
            self.stats.received += 1
            if self._latest is not None:
                self.stats.skipped += 1
            self._latest = msg
            self._wake.notify()

    def _prompt_cb(self, msg: PromptMsg) -> None:
        try:
            prompt = from_prompt_msg(msg)
        except PromptError as error:
            self._reject(f"prompt refused: {error}")
            return
        self._submit(lambda: self._apply([prompt], stamp_ns(msg.header)))

    def _clicked_point_cb(self, msg: PointStamped) -> None:
        self._submit(lambda: self._apply([from_clicked_point(msg)], stamp_ns(msg.header)))

    def _detections_cb(self, msg) -> None:
        prompts = from_detections(msg)
        if prompts:
            self._submit(lambda: self._apply(prompts, stamp_ns(msg.header), renew=True))

    def _submit(self, job: Callable[[], object]) -> Future:
        """Run `job` on the worker thread; its result or refusal arrives in the future."""
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(job())
            except REFUSED as error:
                self._reject(str(error))
                future.set_exception(error)
            except Exception as error:  # a model failure must not end the worker
                self._fail(f"request failed: {type(error).__name__}: {error}")
                future.set_exception(error)

        with self._wake:
            self._jobs.append(run)
            self._wake.notify()
        return future

    def _reject(self, message: str) -> None:
        self.stats.rejected += 1
        self.stats.last_error = message
        self.get_logger().warning(message, throttle_duration_sec=1.0)

    def _fail(self, message: str) -> None:
        self.stats.failed += 1
        self.stats.last_error = message
        self.get_logger().error(message, throttle_duration_sec=1.0)

    # ----- services -----
    def _answer(self, future: Future, response, fill: Callable[[object], str]):
        try:
            response.message = fill(future.result(timeout=SERVICE_TIMEOUT_S))
            response.success = True
        except Exception as error:  # refusals and failures both become the answer's message
            response.success, response.message = False, str(error) or type(error).__name__
        return response

    def _segment_srv(self, request, response):
        prompts = []
        try:
            prompts = [from_prompt_msg(p) for p in request.prompts]
        except PromptError as error:
            response.success, response.message = False, str(error)
            return response
        image = request.image if request.image.width else None
        key = stamp_ns(request.prompts[0].header) if request.prompts else 0

        def done(result: SegmentationResult) -> str:
            response.result = result
            return f"segmented {len(result.objects)} object(s)"
        return self._answer(self._submit(lambda: self._segment_once(prompts, key, image)), response, done)

    def _add_objects_srv(self, request, response):
        try:
            prompts = [from_prompt_msg(p) for p in request.prompts]
        except PromptError as error:
            response.success, response.message = False, str(error)
            return response
        key = stamp_ns(request.prompts[0].header) if request.prompts else 0

        def done(outcome) -> str:
            response.object_ids, response.result = outcome
            return f"applied prompts to object(s) {list(outcome[0])}"
        return self._answer(self._submit(lambda: self._apply(prompts, key)), response, done)

    def _remove_object_srv(self, request, response):
        return self._answer(self._submit(lambda: self._remove(request.object_id)), response,
                            lambda _: f"removed object {request.object_id}")

    def _reset_srv(self, request, response):
        return self._answer(self._submit(self._reset), response, lambda n: f"reset: forgot {n} object(s)")

    # ----- the worker -----
    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._stop and not self._jobs and self._latest is None:
                    self._wake.wait()
                if self._stop:
                    return
                jobs, self._jobs = self._jobs, []
                latest, self._latest = self._latest, None
            for job in jobs:  # prompts first: they refer to frames already seen
                job()
            if latest is not None:
                try:
                    self._process(latest)
                except Exception as error:  # the worker must outlive any one frame
                    self._fail(f"frame dropped: {type(error).__name__}: {error}")

    def _process(self, raw: bytes) -> None:
        """Convert, encode once, track or segment, publish with the input header."""
        compressed = self._config.values["compressed"]
        try:
            msg = deserialize_message(raw, CompressedImage if compressed else Image)
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except ImageError as error:
            self._reject(f"image dropped: {error}")
            return
        key = stamp_ns(msg.header)
        builder = ResultBuilder(msg.header, rgb.shape[:2], self._config.output)
        try:
            start = time.perf_counter()
            frame = encode(self.model, rgb)
            if self._config.values["mode"] == "track":
                result = self._tracker.track(rgb, frame, on_object=builder.add)
                objects, decode_ms = result.objects, result.track_ms
                for object_id, frames in result.dropped_cond_frames.items():
                    self.get_logger().info(f"object {object_id}: over max_cond_frames, dropped "
                                           f"prompted frames {frames}")
            else:
                objects, decode_ms = self._segment_in_force(frame)
            model_ms = (time.perf_counter() - start) * 1e3
        except Exception as error:  # one bad frame is dropped, the next one is processed
            self._fail(f"model failed on frame {key}: {type(error).__name__}: {error}; frame dropped")
            return
        self.stats.processed += 1
        self.stats.model_ms.append(model_ms)
        self._publish(msg.header, rgb, objects, builder, encode_ms=frame.encode_ms, decode_ms=decode_ms)
        # After publishing: dropping the oldest frame frees its embedding, milliseconds at 1024.
        self._segmenter.remember(key, frame)
        self._recent[key] = RecentFrame(msg.header, rgb)
        while len(self._recent) > self._config.values["recent_frames"]:
            self._recent.popitem(last=False)

    def _segment_in_force(self, frame) -> tuple[list, float]:
        """Image mode: every prompt in force on this frame alone; prompts outside it are skipped."""
        prompts = []
        for prompt in self._in_force.values():
            try:
                prompts.append(validate(prompt, frame.image_hw))
            except PromptError as error:
                self._reject(f"object {prompt.object_id} skipped on this frame: {error}")
        if not prompts:
            return [], 0.0
        segmentation = self._segmenter.predict(prompts, frame)
        return segmentation.objects, segmentation.decode_ms

    def _publish(self, header: Header, rgb: np.ndarray, objects, builder: ResultBuilder | None = None,
                 **timings: float) -> SegmentationResult:
        """Publish the result first (what consumers wait for), then the label image and overlay."""
        start = time.perf_counter()
        settings = self._config.output
        hw = rgb.shape[:2]
        result = (builder or ResultBuilder(header, hw, settings)).build(objects, **timings)
        result.postprocess_ms = (time.perf_counter() - start) * 1e3
        stamp = stamp_ns(header)
        if stamp:
            result.latency_ms = (self.get_clock().now().nanoseconds - stamp) / 1e6
            self.stats.latency_ms.append(result.latency_ms)
        self._pubs["result"].publish(result)
        self._pubs["mask"].publish(label_image(objects, header, hw, settings))
        if self._config.values["publish_overlay"] and self._pubs["overlay"].get_subscription_count():
            self._pubs["overlay"].publish(overlay_image(rgb, objects, header, settings))
        return result

    # ----- jobs run on the worker -----
    def _recent_frame(self, key: int) -> tuple[int, RecentFrame]:
        if not self._recent:
            raise FrameNotCached("no camera frame processed yet: prompts need a frame")
        newest = next(reversed(self._recent))
        if key == 0:
            return newest, self._recent[newest]
        if key not in self._recent:
            raise FrameNotCached(f"prompt is stamped for frame {key / 1e9:.6f} s, which this node never "
                                 f"saw or no longer keeps (recent_frames {len(self._recent)})")
        return key, self._recent[key]

    def _check(self, prompts: list[Prompt], hw: tuple[int, int], tracked: set[int]) -> list[Prompt]:
        """Validate every prompt before any is applied: all or nothing."""
        checked = [validate(prompt, hw) for prompt in prompts]
        limit = 255 if self._config.values["mask_encoding"] == "mono8" else 65535
        for prompt in checked:
            if prompt.object_id > limit:
                raise PromptError(f"object id {prompt.object_id} does not fit the "
                                  f"{self._config.values['mask_encoding']} label image (max {limit})")
        new = sum(1 for p in checked if p.object_id == ASSIGN_NEW_ID or p.object_id not in tracked)
        if len(tracked) + new > self._config.values["max_objects"]:
            raise TrackerError(f"cannot add {new} object(s): {len(tracked)} tracked, max_objects "
                               f"{self._config.values['max_objects']}")
        return checked

    def _apply(self, prompts: list[Prompt], key: int, renew: bool = False):
        """Add or correct objects; publish and return (object ids, result) for the frame used."""
        key, recent = self._recent_frame(key)
        hw = recent.rgb.shape[:2]
        if self._config.values["mode"] == "track":
            newest = next(reversed(self._recent))
            if key != newest:
                self.get_logger().info(f"prompt for frame {key / 1e9:.6f} s applied to the newest "
                                       f"frame {newest / 1e9:.6f} s: tracking only moves forward")
                key, recent = newest, self._recent[newest]
            tracked = set(self._tracker.objects)
            if renew:  # detector boxes only seed objects no tracked mask already covers
                prompts = [p for p in prompts if not self._covered(p)]
            ids, result = [], None
            for prompt in self._check(prompts, hw, tracked):
                object_id, result = self._tracker.add_prompt(prompt)
                ids.append(object_id)
            objects = result.objects if result else self._tracker.current()
        else:
            if renew:  # the detector's newest boxes replace its earlier ones
                self._in_force.clear()
            checked = self._check(prompts, hw, set(self._in_force))
            ids = []
            for prompt in checked:
                object_id = prompt.object_id
                if object_id == ASSIGN_NEW_ID:
                    object_id = first_free_id(self._in_force)
                    prompt = replace(prompt, object_id=object_id)
                self._in_force[object_id] = prompt
                ids.append(object_id)
            objects = self._segmenter.predict(list(self._in_force.values()), key).objects
        return ids, self._publish(recent.header, recent.rgb, objects)

    def _covered(self, prompt: Prompt) -> bool:
        """Whether a box lies mostly on an object already tracked on the newest frame."""
        x0, y0, x1, y1 = (max(int(round(v)), 0) for v in prompt.box)
        return any(obj.mask[y0:y1, x0:x1].size and obj.mask[y0:y1, x0:x1].mean() > 0.5
                   for obj in self._tracker.current())

    def _segment_once(self, prompts: list[Prompt], key: int, image: Image | None) -> SegmentationResult:
        """Segment now: a one-off answer that changes no tracked object."""
        numbered = [p if p.object_id != ASSIGN_NEW_ID else replace(p, object_id=i + 1)
                    for i, p in enumerate(prompts)]
        if image is not None:
            rgb = image_to_rgb(image)
            segmentation = self._segmenter.segment(rgb, numbered)
            return result_message(segmentation.objects, image.header, rgb.shape[:2], self._config.output,
                                  encode_ms=segmentation.encode_ms, decode_ms=segmentation.decode_ms)
        key, recent = self._recent_frame(key)
        segmentation = self._segmenter.predict(numbered, key)
        return result_message(segmentation.objects, recent.header, recent.rgb.shape[:2],
                              self._config.output, decode_ms=segmentation.decode_ms)

    def _remove(self, object_id: int) -> None:
        if self._config.values["mode"] == "track":
            self._tracker.remove(object_id)
        elif self._in_force.pop(object_id, None) is None:
            raise TrackerError(f"no object with id {object_id} (ids: {sorted(self._in_force) or 'none'})")

    def _reset(self) -> int:
        count = len(self._tracker.objects) + len(self._in_force)
        self._tracker.reset()
        self._in_force.clear()
        return count

    # ----- diagnostics -----
    def _publish_diagnostics(self) -> None:
        s = self.stats
        values = {
            "frames received": s.received, "frames processed": s.processed, "frames skipped": s.skipped,
            "inputs rejected": s.rejected, "model failures": s.failed,
            "latency p50 ms": s.percentile(s.latency_ms, 50),
            "latency p95 ms": s.percentile(s.latency_ms, 95),
            "model p50 ms": s.percentile(s.model_ms, 50), "device": self.model.device if self.model else "",
            "objects": len(self._tracker.objects) + len(self._in_force) if self._tracker else 0,
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


def spin(executor: Executor) -> None:
    """Spin until the executor or the context shuts down, outliving an rclpy race.

    A transition that destroys endpoints while the executor builds its wait set makes rclpy
    raise InvalidHandle out of spin() (ros2/rclpy#1206, #1142); the executor recovers on
    the next call, so spinning resumes instead of leaving the node deaf.
    """
    while True:
        try:
            executor.spin()
            return
        except InvalidHandle:
            continue


def main(args: list[str] | None = None) -> int:
    """Spin the node until Ctrl-C or an external shutdown, then exit cleanly."""
    rclpy.init(args=args)
    node = None
    executor = MultiThreadedExecutor(num_threads=4)  # services wait on the worker; keep threads for the rest
    try:
        node = Sam2SegmenterNode()
        executor.add_node(node)
        spin(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or `ros2 lifecycle set ... shutdown`: a normal way to stop
    finally:
        executor.shutdown()
        if node is not None:
            node._stop_worker()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
