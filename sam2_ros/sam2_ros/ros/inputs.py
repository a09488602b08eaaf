"""The node's subscriptions: camera frames to the queue's frame slot, prompts to its jobs.

Made on activate and destroyed on deactivate. Callbacks never touch the model: they check
what they can alone (a prompt's size, a click's projection), then hand a job to the worker;
a full queue refuses it at once.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from geometry_msgs.msg import Point, PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from sam2_ros.core import settings as S
from sam2_ros.core.prompts import Detections, PromptError
from sam2_ros.core.session import TrackingSession
from sam2_ros.core.work_queue import Refused, WorkQueue
from sam2_ros.ros import vision
from sam2_ros.ros.clicks import click_prompt, from_pixel_click, in_camera_frame, project
from sam2_ros.ros.depth import DepthInput
from sam2_ros.ros.diagnostics import Diagnostics
from sam2_ros.ros.prompt_msgs import from_detections, from_prompt_msg, stamp_ns
from sam2_ros.ros.worker import Worker
from sam2_ros_interfaces.msg import Prompt as PromptMsg

try:  # tf2 is optional: with it, 3-D clicks in any frame are moved into the camera's optical frame
    import tf2_ros
except ImportError:
    tf2_ros = None


DEPTH_QUEUE = 10

class Inputs:
    """Camera, prompt, click, detection, camera_info and depth subscriptions of an active node."""

    def __init__(self, node, config: S.NodeConfig, queue: WorkQueue, session: TrackingSession, worker: Worker,
                 diagnostics: Diagnostics, depth: DepthInput, settings: Callable[[], S.NodeConfig],
                 arrivals: Iterator[int]):
        self._node, self._queue, self._session, self._worker = node, queue, session, worker
        self._diagnostics, self._depth, self._settings = diagnostics, depth, settings
        self._arrivals = arrivals  # the node's: arrival numbers keep growing across activations
        self._lock = threading.Lock()  # the camera info and the detections clock
        self._camera_info: CameraInfo | None = None
        self._last_detections = time.monotonic()
        own = config.inputs
        images, prompts = MutuallyExclusiveCallbackGroup(), ReentrantCallbackGroup()
        reliability = (qos_profile_sensor_data.reliability if own.image_qos == "sensor_data"
                       else ReliabilityPolicy.RELIABLE)
        qos = QoSProfile(depth=own.image_qos_depth, reliability=reliability)
        # depth and camera infos come from the same camera, as its image does: each depth frame
        # is kept (not only the newest), so a few may queue while the executor is busy
        stream = QoSProfile(depth=max(own.image_qos_depth, DEPTH_QUEUE), reliability=reliability)
        image_type, self.image_topic = (CompressedImage, "image/compressed") if own.compressed else (Image, "image")
        sub = node.create_subscription
        self._endpoints = [
            # raw: only the frames the worker takes are deserialised, not every camera frame
            sub(image_type, self.image_topic, self._image_cb, qos, callback_group=images, raw=True),
            sub(PromptMsg, "prompt", self.prompt_cb, 10, callback_group=prompts),
            sub(PointStamped, "clicked_point", self._clicked_point_cb, 10, callback_group=prompts),
            sub(Point, "clicked_pixel", self._clicked_pixel_cb, 10, callback_group=prompts),
            sub(CameraInfo, "camera_info", self._camera_info_cb, stream, callback_group=prompts),
        ]
        if vision.available():
            self._endpoints.append(sub(vision.Detection2DArray, "detections", self.detections_cb, 10,
                                       callback_group=prompts))
        if config.depth.enabled:
            depth_group = MutuallyExclusiveCallbackGroup()
            self._endpoints += [
                sub(Image, "depth", depth.add_depth, stream, callback_group=depth_group),
                sub(CameraInfo, "depth/camera_info", depth.set_depth_info, stream, callback_group=depth_group),
            ]
        self._tf_buffer = self._tf_listener = None
        if tf2_ros is not None:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, node)

    def camera_info(self) -> CameraInfo | None:
        """Return the newest colour camera_info (3-D clicks are projected with it)."""
        with self._lock:
            return self._camera_info

    def detections_quiet_for(self) -> float:
        with self._lock:
            return time.monotonic() - self._last_detections

    def _image_cb(self, msg: bytes) -> None:
        replaced = self._queue.put_frame((next(self._arrivals), msg))
        self._diagnostics.stats.count(received=1, skipped=int(replaced))

    def submit(self, change: Callable[[S.NodeConfig], object]) -> None:
        """Queue a change no caller waits for; the worker hands it to the delivery with its own settings."""
        def run():
            config = self._settings()
            return self._worker.deliver(change(config), config)
        try:
            self._queue.submit(run)
        except Refused as error:
            self._diagnostics.reject(f"prompt refused: {error}", error)

    def prompt_cb(self, msg: PromptMsg) -> None:
        """Take a Prompt message (also a seam: a composed node or a test may hand one in directly)."""
        own = self._settings().inputs
        try:
            prompt = from_prompt_msg(msg, own.max_prompt_points, own.max_image_pixels)
        except PromptError as error:
            self._diagnostics.reject(f"prompt refused: {error}", error)
            return
        key = stamp_ns(msg.header)
        self.submit(lambda config: self._session.apply([prompt], key, config))

    def _clicked_pixel_cb(self, msg: Point) -> None:
        """rqt_image_view's click: a pixel of the newest frame (the message has no header)."""
        prompt = from_pixel_click(msg)
        self.submit(lambda config: self._session.apply([prompt], 0, config))

    def _camera_info_cb(self, msg: CameraInfo) -> None:
        logger = self._node.get_logger()
        if self.camera_info() is None and any(msg.d) and not any(msg.p):
            logger.warning("camera_info has distortion and no projection matrix: 3-D clicks are "
                           "projected as if the image were rectified", once=True)
        if self._settings().depth.enabled and any(msg.d):
            logger.info("camera_info has distortion coefficients: 3D assumes the colour and depth "
                        "images are rectified (image_rect, aligned depth)", once=True)
        with self._lock:
            self._camera_info = msg
        self._depth.set_colour_info(msg)

    def _clicked_point_cb(self, msg: PointStamped) -> None:
        """RViz's Publish Point: a 3-D point, projected into the image with the camera info."""
        info = self.camera_info()
        try:
            if info is None:
                raise PromptError("no camera_info received yet (remap camera_info to the camera's, "
                                  "e.g. -r camera_info:=/camera/color/camera_info)")
            lookup = None if self._tf_buffer is None else self._lookup_transform
            u, v = project(in_camera_frame(msg, info, lookup), info)
        except PromptError as error:
            self._diagnostics.reject(f"clicked point refused: {error}", error)
            return
        click_hw = (info.height, info.width) if info.height and info.width else None
        key, prompt = stamp_ns(msg.header), click_prompt(u, v)
        self.submit(lambda config: self._session.apply([prompt], key, config, click_hw))

    def _lookup_transform(self, target: str, source: str):
        try:
            return self._tf_buffer.lookup_transform(target, source, Time()).transform
        except Exception as error:  # tf2's lookup, connectivity and extrapolation errors
            raise PromptError(f"no transform from '{source}' to '{target}': {error}") from None

    def detections_cb(self, msg) -> None:
        """Turn a detector's vision_msgs/Detection2DArray into box prompts (see session)."""
        with self._lock:
            self._last_detections = time.monotonic()
        detections = from_detections(msg)
        for reason in detections.dropped:
            self._diagnostics.reject(f"detection dropped: {reason}", "bad detection")
        key = stamp_ns(msg.header)
        self.submit(lambda config: self._session.apply_detections(detections, key, config))

    def expire_detections(self, timeout_s: float) -> None:
        """Image mode: a detector that went quiet for `timeout_s` has its boxes dropped."""
        if timeout_s and self.detections_quiet_for() > timeout_s and self._session.has_detector_boxes():
            with self._lock:
                self._last_detections = time.monotonic()
            self.submit(lambda config: self._session.apply_detections(Detections([], []), 0, config))

    def close(self) -> None:
        """Destroy every subscription (and tf2's listener)."""
        for endpoint in self._endpoints:
            self._node.destroy_subscription(endpoint)
        self._endpoints = []
        if self._tf_listener is not None:
            self._tf_listener.unregister()
            self._tf_listener = None
