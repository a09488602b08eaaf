"""The node's services: every call answered exactly once, with the truth.

Services live from configure to cleanup, so a call that races deactivate is answered ("node
deactivated") and one made while inactive is refused at once, never left hanging. A request
runs on the worker; one not started within request_timeout_s is cancelled (it gives its queue
place back and is never applied later), and a long one (segment everything) still running then
is abandoned at its next slice.
"""
from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Callable

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from sam2_ros.core import settings as S
from sam2_ros.core.prompts import Prompt, PromptError
from sam2_ros.core.session import TrackingSession
from sam2_ros.core.work_queue import Job, Refused, WorkQueue
from sam2_ros.ros.conversions import image_to_rgb
from sam2_ros.ros.diagnostics import Diagnostics
from sam2_ros.ros.outputs import Outputs
from sam2_ros.ros.prompt_msgs import from_prompt_msg, stamp_ns
from sam2_ros.ros.worker import Worker
from sam2_ros_interfaces.srv import AddObjects, RemoveObject, Segment, SegmentEverything

SERVICE_DRAIN_S = 5.0  # at cleanup, how long answers already in flight may take
# What ~/segment_everything may ask and answer (SegmentEverything.srv says so): 64 x 64 points
# decode in slices within minutes at worst, and the masks made at the end stay bounded whatever
# the thresholds keep (the best 255: as many as a mono8 label image can tell apart).
MAX_POINTS_PER_SIDE = 64
MAX_PROPOSALS = 255
# Calls wait in the middleware while the executor's threads wait on the worker. ROS's default
# service QoS keeps 10 there and drops older ones unseen, so a burst went unanswered; this
# many outstanding calls to one service are kept, each taken and answered in turn.
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=64, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)


class Requests:
    """~/segment, ~/add_objects, ~/remove_object, ~/reset and ~/segment_everything."""

    def __init__(self, node, queue: WorkQueue, session: TrackingSession, worker: Worker, outputs: Outputs,
                 diagnostics: Diagnostics, settings: Callable[[], S.NodeConfig]):
        self._node, self._queue, self._session, self._worker = node, queue, session, worker
        self._outputs, self._diagnostics, self._settings = outputs, diagnostics, settings
        self._in_flight = 0
        self._done = threading.Condition()
        group = ReentrantCallbackGroup()

        def make(srv_type, name: str, callback):
            return node.create_service(srv_type, name, callback, qos_profile=SERVICE_QOS, callback_group=group)
        self._services = [
            make(Segment, "~/segment", self._segment_srv),
            make(AddObjects, "~/add_objects", self._add_objects_srv),
            make(RemoveObject, "~/remove_object", self._remove_object_srv),
            make(Trigger, "~/reset", self._reset_srv),
            make(SegmentEverything, "~/segment_everything", self._segment_everything_srv),
        ]

    def close(self) -> None:
        """Wait (a bounded time) for answers in flight, then destroy the services."""
        with self._done:
            self._done.wait_for(lambda: self._in_flight == 0, timeout=SERVICE_DRAIN_S)
            for service in self._services:
                self._node.destroy_service(service)
            self._services = []

    def _call(self, run: Callable[[], object], response, fill: Callable[[object], str]):
        """Queue `run` for the worker and answer once: its outcome, a refusal, or a cancellation."""
        with self._done:
            self._in_flight += 1
        try:
            job = self._queue.submit_job(run)
            outcome = self._outcome(job, self._settings().requests.timeout_s)
            response.message, response.success = fill(outcome), True
        except Refused as error:
            self._diagnostics.reject(f"request refused: {error}", error)
            response.success, response.message = False, str(error)
        except Exception as error:  # refusals and failures both become the answer's message
            response.success, response.message = False, str(error) or type(error).__name__
        finally:
            with self._done:
                self._in_flight -= 1
                self._done.notify_all()
        return response

    def _outcome(self, job: Job, timeout: float):
        try:
            return job.future.result(timeout=timeout)
        except FutureTimeout:
            if job.future.cancel():
                self._diagnostics.reject(f"request cancelled: not started within {timeout:.1f} s", "request cancelled")
                raise Refused(f"not applied: the node did not start this request within {timeout:.1f} s "
                              "(request_timeout_s); it was cancelled") from None
            job.abandoned.set()  # a long pass stops at its next slice; a short job finishes
            return job.future.result()

    def _prompts(self, messages) -> list[Prompt]:
        inputs = self._settings().inputs
        return [from_prompt_msg(p, inputs.max_prompt_points, inputs.max_image_pixels) for p in messages]

    def _image(self, msg):
        """Return the request's own image as RGB, or None when it names a kept frame instead."""
        if not (msg.width or msg.height):
            return None
        return image_to_rgb(msg, self._settings().inputs.max_image_pixels)

    def _with_prompts(self, request, response, run: Callable, fill: Callable[[object], str]):
        """Check the request's prompts at once (bad ones are answered without queueing), then call `run`."""
        try:
            prompts = self._prompts(request.prompts)
        except PromptError as error:
            response.success, response.message = False, str(error)
            return response
        key = stamp_ns(request.prompts[0].header) if request.prompts else 0
        return self._call(lambda: run(prompts, key, self._settings()), response, fill)

    def _segment_srv(self, request, response):
        def run(prompts, key, config):
            objects, hw, frame, encode_ms, decode_ms = self._session.segment_once(
                prompts, key, self._image(request.image), config)
            header = request.image.header if frame is None else frame.header
            return self._outputs.describe(objects, header, hw, config, encode_ms=encode_ms, decode_ms=decode_ms)

        def done(result) -> str:
            response.result = result
            return f"segmented {len(result.objects)} object(s)"
        return self._with_prompts(request, response, run, done)

    def _segment_everything_srv(self, request, response):
        defaults = self._settings().everything.settings()
        settings = replace(  # a threshold below 0 asks for the node's; NaN is asked for, and refused below
            defaults, points_per_side=request.points_per_side or defaults.points_per_side,
            pred_iou_thresh=defaults.pred_iou_thresh if request.pred_iou_thresh < 0 else request.pred_iou_thresh,
            stability_score_thresh=(defaults.stability_score_thresh if request.stability_score_thresh < 0
                                    else request.stability_score_thresh))
        try:
            bounded(settings)
        except ValueError as error:
            self._diagnostics.reject(f"segment_everything refused: {error}", "bad request")
            response.success, response.message = False, str(error)
            return response

        def run():
            config = self._settings()
            proposals, hw, frame, encode_ms, decode_ms = yield from self._session.everything(
                settings, stamp_ns(request.header), self._image(request.image), config, self._worker.job_slice_s,
                MAX_PROPOSALS)
            header = request.image.header if frame is None else frame.header
            return self._outputs.describe(proposals, header, hw, config, encode_ms=encode_ms, decode_ms=decode_ms)

        def done(result) -> str:
            response.result = result
            return f"found {len(result.objects)} object(s)"
        return self._call(run, response, done)

    def _add_objects_srv(self, request, response):
        def run(prompts, key, config):
            return self._worker.deliver(self._session.apply(prompts, key, config), config)

        def done(outcome) -> str:
            ids, published = outcome
            response.object_ids = ids
            try:
                response.result = published.result()  # answered once it is out
            except Exception as error:  # the objects stay: only their result did not go out
                raise RuntimeError(f"object(s) {list(ids)} applied and tracked, but their result was not published: "
                                   f"{type(error).__name__}: {error}") from None
            return f"applied prompts to object(s) {list(ids)}"
        return self._with_prompts(request, response, run, done)

    def _remove_object_srv(self, request, response):
        return self._call(lambda: self._session.remove(request.object_id, self._settings()), response,
                          lambda _: f"removed object {request.object_id}")

    def _reset_srv(self, request, response):
        return self._call(self._session.reset, response, lambda n: f"reset: forgot {n} object(s)")


def bounded(settings) -> None:
    """Refuse a segment-everything request outside what one pass may ask (see SegmentEverything.srv)."""
    if not 1 <= settings.points_per_side <= MAX_POINTS_PER_SIDE:  # the service's own bound, before the core's
        raise ValueError(f"points_per_side must be 1..{MAX_POINTS_PER_SIDE} (0: the node's "
                         f"everything_points_per_side), got {settings.points_per_side}")
    settings.check()
