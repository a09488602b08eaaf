"""Drive an in-process sam2_segmenter_node over real topics and time what comes back."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import rclpy
from geometry_msgs.msg import Point32
from rclpy.duration import Duration
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sam2_ros.ros.conversions import array_to_image
from sam2_ros.ros.main import spin
from sam2_ros.ros.node import Sam2SegmenterNode
from sam2_ros.ros.process import ProcessTuning
from sam2_ros.ros.prompt_msgs import stamp_ns
from sam2_ros_interfaces.msg import Prompt, SegmentationResult


class NodeProbe:
    """The node and a camera/listener peer on one executor; results are timed on arrival."""

    def __init__(self, overrides: dict):
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.overrides = overrides
        self._arrived = threading.Condition()
        self.results: list[tuple[float, SegmentationResult]] = []

    def __enter__(self) -> NodeProbe:
        rclpy.init()
        self.tuning = ProcessTuning().__enter__()  # as main() runs the node
        self.node = Sam2SegmenterNode(tuning=self.tuning,
                                      parameter_overrides=[Parameter(k, value=v) for k, v in self.overrides.items()])
        self.peer = rclpy.create_node("sam2_probe")
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.camera = self.peer.create_publisher(Image, "image", reliable)
        self.depth = self.peer.create_publisher(Image, "depth", reliable)
        self.camera_info = self.peer.create_publisher(CameraInfo, "camera_info", reliable)
        self.depth_image: np.ndarray | None = None  # with depth: true, sent (16UC1) just before each frame
        self.depth_behind_ns = 0  # each depth frame stamped this much before its colour frame
        self.prompts = self.peer.create_publisher(Prompt, "prompt", 10)
        self.peer.create_subscription(SegmentationResult, "/sam2_segmenter_node/result", self._result_cb, reliable)
        # Each with an executor of its own, as in separate processes: the node's like main()'s.
        self.executors = [MultiThreadedExecutor(num_threads=4), SingleThreadedExecutor()]
        self._stopping = threading.Event()
        self._spinning = [threading.Thread(target=spin, args=(executor, self._stopping.is_set), daemon=True)
                          for executor in self.executors]
        for executor, node, thread in zip(self.executors, (self.node, self.peer), self._spinning):
            executor.add_node(node)
            thread.start()
        self._wait(lambda: self.camera.get_subscription_count() and self.prompts.get_subscription_count(), 30)
        return self

    def __exit__(self, *exc) -> None:
        # the spinning threads end before their executors shut down: rclpy's shutdown() destroys the
        # wait set's guard conditions under a thread still spinning ("wait set is empty", seen in CI)
        self._stopping.set()
        for thread in self._spinning:
            thread.join(timeout=10)
        for executor in self.executors:
            executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()
        rclpy.shutdown()
        self.tuning.__exit__(*exc)

    def _result_cb(self, msg: SegmentationResult) -> None:
        with self._arrived:
            self.results.append((time.monotonic(), msg))
            self._arrived.notify_all()

    def _wait(self, condition, timeout: float):
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not condition():
                if time.monotonic() > deadline:
                    raise TimeoutError("the node did not answer in time")
                self._arrived.wait(0.01)

    def start_depth(self, depth_mm: np.ndarray, focal: float, behind_s: float = 0.0) -> None:
        """From now on send this depth image with each frame, and a camera_info for it.

        It is stamped like the frame, or `behind_s` earlier: a depth stream that flows but never
        reaches the frames' stamps, so each frame's outputs wait depth_wait_ms for it.
        """
        self.depth_behind_ns = round(behind_s * 1e9)
        height, width = depth_mm.shape
        cx, cy = (width - 1) / 2, (height - 1) / 2
        info = CameraInfo(width=width, height=height, k=[focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0])
        self.depth_image = depth_mm
        self._wait(lambda: self.depth.get_subscription_count() and self.camera_info.get_subscription_count(), 30)
        deadline = time.monotonic() + 30
        while not self.node.depth.has_infos()[0] and time.monotonic() < deadline:
            self.camera_info.publish(info)
            time.sleep(0.05)

    def publish(self, image: np.ndarray) -> tuple[int, float]:
        """Publish a frame stamped now (its depth first); return its stamp in ns and the time of publishing."""
        header = Header(stamp=self.peer.get_clock().now().to_msg())
        msg = array_to_image(image, "rgb8", header)
        if self.depth_image is not None:
            stamp = Time.from_msg(header.stamp) - Duration(nanoseconds=self.depth_behind_ns)
            self.depth.publish(array_to_image(self.depth_image, "16UC1", Header(stamp=stamp.to_msg())))
        published = time.monotonic()
        self.camera.publish(msg)
        return stamp_ns(msg.header), published

    def round_trip(self, image: np.ndarray, timeout: float = 120.0) -> float:
        """Milliseconds from publishing a frame to receiving its result."""
        stamp, published = self.publish(image)
        self._wait(lambda: any(stamp_ns(r.header) == stamp for _, r in self.results[-5:]), timeout)
        arrived = next(t for t, r in reversed(self.results) if stamp_ns(r.header) == stamp)
        return (arrived - published) * 1e3

    def settle(self, image: np.ndarray, boxes: list[np.ndarray]) -> None:
        """One frame, then one box prompt per new object, then one warm-up frame with them all."""
        self.round_trip(image)
        before = len(self.node.session.object_labels())
        for box in boxes:
            self.prompts.publish(Prompt(object_id=-1, box=[float(v) for v in box]))
        self._wait(lambda: len(self.node.session.object_labels()) == before + len(boxes), 120)
        self.round_trip(image)

    def stream(self, image: np.ndarray, rate_hz: float, seconds: float) -> tuple[list[float], float, int, list[float]]:
        """Run a camera at `rate_hz` for `seconds`.

        Returns result ages, the model period, frames skipped and the intervals between results.
        """
        self.results.clear()
        counts = self.node.counts()
        skipped_before, processed_before = counts.skipped, counts.processed
        sent = {}
        period, deadline = 1.0 / rate_hz, time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            stamp, published = self.publish(image)
            sent[stamp] = published
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        last = max(sent)
        # The newest frame is never replaced, so its result always comes: the run is drained.
        self._wait(lambda: any(stamp_ns(r.header) == last for _, r in self.results), 600)
        counts = self.node.counts()
        processed = counts.processed - processed_before
        time_model = float(np.median(counts.model_ms[-processed:]))  # this run's frames only
        answered = [(arrived, r) for arrived, r in self.results if stamp_ns(r.header) in sent]
        ages = [(arrived - sent[stamp_ns(r.header)]) * 1e3 for arrived, r in answered]
        intervals = list(np.diff([arrived for arrived, _ in answered]) * 1e3)
        return ages, time_model, counts.skipped - skipped_before, intervals

    def taken_per_second(self, image: np.ndarray, rate_hz: float, seconds: float, prompts: list = (),
                         prompt_period_s: float = 0.1) -> float:
        """Run a camera at `rate_hz` for `seconds`, the prompts sent `prompt_period_s` apart from its start.

        Returns the camera frames the node's worker took per second (received and not replaced
        by a newer one while it was busy): what a worker held up by anything else loses.
        """
        before = self.node.counts()
        period, start = 1.0 / rate_hz, time.monotonic()
        pending = [(start + i * prompt_period_s, prompt) for i, prompt in enumerate(prompts)]
        next_at = start
        while time.monotonic() < start + seconds:
            last, _ = self.publish(image)
            while pending and pending[0][0] <= time.monotonic():
                self.prompts.publish(self._prompt_msg(pending.pop(0)[1]))
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        after = self.node.counts()
        # drained before the next run: the newest frame is never replaced, so its result comes
        self._wait(lambda: any(stamp_ns(r.header) == last for _, r in self.results[-20:]), 120)
        return ((after.received - before.received) - (after.skipped - before.skipped)) / seconds

    @staticmethod
    def _prompt_msg(prompt) -> Prompt:
        """Turn a core Prompt (points and/or box) into the node's Prompt message, for the newest frame."""
        msg = Prompt(object_id=prompt.object_id, label=prompt.label)
        msg.points = [Point32(x=float(x), y=float(y)) for x, y in prompt.points]
        msg.point_labels = [int(v) for v in prompt.point_labels]
        if prompt.box is not None:
            msg.box = [float(v) for v in prompt.box]
        return msg
