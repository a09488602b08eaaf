"""A real rclpy harness: the node under test and a peer node on one executor, real topics."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Callable

import cv2
import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from sam2_ros.ros.conversions import array_to_image, image_to_array
from sam2_ros.ros.main import spin
from sam2_ros.ros.node import Sam2SegmenterNode
from sam2_ros_interfaces.msg import Prompt as PromptMsg
from sam2_ros_interfaces.msg import SegmentationResult
from sam2_ros_interfaces.srv import AddObjects

NODE = "/sam2_segmenter_node"


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition"):
    """Poll with a deadline (discovery and the model take variable time): never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def header(seconds: int, nanoseconds: int = 0, frame_id: str = "camera_optical") -> Header:
    msg = Header(frame_id=frame_id)
    msg.stamp.sec, msg.stamp.nanosec = seconds, nanoseconds
    return msg


def full_mask(obj, hw) -> np.ndarray:
    """Paste a SegmentedObject's cropped mask back into the image frame."""
    mask = np.zeros(hw, bool)
    if obj.visible:
        crop = image_to_array(obj.mask) > 0
        x, y = obj.box.x_offset, obj.box.y_offset
        mask[y:y + obj.box.height, x:x + obj.box.width] = crop
    return mask


def rasterise(contours, hw) -> np.ndarray:
    """Fill each outer contour minus the inside of its holes (hole contours run over the
    object's own boundary pixels); with no simplification this re-draws the mask.
    """
    def filled(contour, outline: bool) -> np.ndarray:
        canvas = np.zeros(hw, np.uint8)
        points = contour.points.astype(np.int32)
        cv2.fillPoly(canvas, [points], 1)
        if not outline:
            cv2.polylines(canvas, [points], True, 0)
        return canvas.astype(bool)

    mask = np.zeros(hw, bool)
    for index, outer in enumerate(contours):
        if not outer.is_hole:
            region = filled(outer, True)
            for hole in contours:
                if hole.is_hole and hole.parent == index:
                    region &= ~filled(hole, False)
            mask |= region
    return mask


def box_prompt(box, stamp=None, object_id=-1, label="") -> PromptMsg:
    return PromptMsg(header=stamp or header(0), object_id=object_id, label=label, box=[float(v) for v in box])


def detection(x, y, w, h, label, score):
    """The shape of vision_msgs/Detection2D (Humble and later), which cannot be installed here."""
    hypothesis = SimpleNamespace(hypothesis=SimpleNamespace(class_id=label, score=score))
    center = SimpleNamespace(position=SimpleNamespace(x=x, y=y), theta=0.0)
    return SimpleNamespace(bbox=SimpleNamespace(center=center, size_x=w, size_y=h), results=[hypothesis])


def detections(stamp, *boxes):
    return SimpleNamespace(header=stamp, detections=list(boxes))


def add(running, *prompts) -> AddObjects.Response:
    return running.peer.call(AddObjects, f"{NODE}/add_objects", AddObjects.Request(prompts=list(prompts)))


class Peer:
    """The world around the node: a camera publisher, and listeners on every output."""

    def __init__(self, node_ns: str = "/sam2_segmenter_node", image_topic: str = "image", name: str = "peer"):
        self.node = rclpy.create_node(name)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.camera = self.node.create_publisher(Image, image_topic, reliable)
        self.results: list[SegmentationResult] = []
        self.masks: list[Image] = []
        self.node.create_subscription(SegmentationResult, f"{node_ns}/result", self.results.append, reliable)
        self.node.create_subscription(Image, f"{node_ns}/mask", self.masks.append, reliable)

    def publish_rgb(self, rgb: np.ndarray, stamp: Header, encoding: str = "rgb8") -> None:
        self.camera.publish(array_to_image(rgb, encoding, stamp))

    def result_for(self, stamp: Header, timeout: float = 60.0) -> SegmentationResult:
        return wait_until(lambda: next((r for r in reversed(self.results) if r.header == stamp), None),
                          timeout, f"a result for stamp {stamp.stamp.sec}.{stamp.stamp.nanosec}")

    def stream_until_result(self, rgb: np.ndarray, stamp: Header, timeout: float = 60.0) -> SegmentationResult:
        """Publish the frame again each second, as a camera would, until its result comes back.

        Right after a (re)subscription the first frames can beat discovery and be lost.
        """
        last = 0.0

        def arrived():
            nonlocal last
            if time.monotonic() - last > 1.0:
                self.publish_rgb(rgb, stamp)
                last = time.monotonic()
            return next((r for r in reversed(self.results) if r.header == stamp), None)
        return wait_until(arrived, timeout, f"a result for stamp {stamp.stamp.sec}.{stamp.stamp.nanosec}")

    def mask_for(self, stamp: Header, timeout: float = 30.0) -> Image:
        return wait_until(lambda: next((m for m in reversed(self.masks) if m.header == stamp), None),
                          timeout, "a label image")

    def call(self, srv_type, name: str, request, timeout: float = 60.0):
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=30), f"service {name} never appeared"
        future = client.call_async(request)
        wait_until(future.done, timeout, f"an answer from {name}")
        return future.result()


class Running:
    """An in-process node and its peer, spun by a MultiThreadedExecutor in a thread."""

    def __init__(self, checkpoint: str, **overrides):
        rclpy.init()
        params = {"checkpoint": checkpoint, "device": "cpu", "image_size": 256, "contour_epsilon": 0.0,
                  **overrides}
        self.node = Sam2SegmenterNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.peer = Peer()
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer.node)
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=spin, args=(self.executor, self._stopping.is_set), daemon=True)
        self.thread.start()
        if not params.get("compressed"):
            wait_until(lambda: self.peer.camera.get_subscription_count() > 0, 30, "the image subscription")

    def close(self) -> None:
        # the spinning thread ends before the executor shuts down (rclpy's shutdown() destroys the wait
        # set's guard conditions under a thread still spinning), and before the context goes
        self._stopping.set()
        self.thread.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.node.destroy_node()
        rclpy.shutdown()
