"""Every publisher of the node, and a frame's outputs built from that frame's settings.

Publishers are made on configure (lifecycle publishers: silent while inactive) and destroyed
on cleanup. `publish` takes the settings snapshot the frame was processed with, so one frame
is never published under two settings; what nobody subscribes to is not built.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from sam2_ros.core import settings as S
from sam2_ros.core.frames import RecentFrame
from sam2_ros.ros import vision
from sam2_ros.ros.depth import DepthScene
from sam2_ros.ros.results import FrameMismatch, ResultBuilder, label_image, overlay_image
from sam2_ros.ros.spatial import cloud_message, marker_array
from sam2_ros_interfaces.msg import SegmentationResult

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class Outputs:
    """~/result, ~/mask, ~/overlay, 3D (~/points, ~/markers) and vision_msgs outputs of one node."""

    def __init__(self, node, config: S.NodeConfig):
        self._node = node
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="sam2_describe")
        make = node.create_publisher
        self._pubs = {"result": make(SegmentationResult, "~/result", RELIABLE),
                      "mask": make(Image, "~/mask", RELIABLE),
                      "overlay": make(Image, "~/overlay", RELIABLE)}
        if config.depth.enabled:
            self._pubs["points"] = make(PointCloud2, "~/points", RELIABLE)
            self._pubs["markers"] = make(MarkerArray, "~/markers", RELIABLE)
        if vision.available():
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._pubs["detections"] = make(vision.Detection2DArray, "~/detections", RELIABLE)
            self._pubs["label_info"] = make(vision.LabelInfo, "~/label_info", latched)
            if config.depth.enabled:
                self._pubs["detections_3d"] = make(vision.Detection3DArray, "~/detections_3d", RELIABLE)
        self._labels_sent = None  # the label map last sent on ~/label_info (the delivery thread's alone)

    def subscribers(self, output: str) -> int:
        """How many subscribe to one output ('result', 'mask', 'overlay', 'points', ...); 0 if absent."""
        publisher = self._pubs.get(output)
        return publisher.get_subscription_count() if publisher is not None else 0

    def builder(self, frame_header, image_hw: tuple[int, int], config: S.NodeConfig,
                scene: DepthScene | None = None) -> ResultBuilder:
        """Start a result: objects are described on the pool as the tracker hands them over.

        With `scene` (the frame's depth, already there) each object's 3D is worked out with it.
        """
        return ResultBuilder(frame_header, image_hw, config.output_settings, self._pool, scene)

    def describe(self, objects, header, image_hw: tuple[int, int], config: S.NodeConfig,
                 **timings: float) -> SegmentationResult:
        """Build a result that is answered, not published (one-off segmentation)."""
        return self.builder(header, image_hw, config).build(objects, **timings)

    def publish(self, frame: RecentFrame, objects, config: S.NodeConfig, builder: ResultBuilder | None = None,
                scene: DepthScene | None = None, **timings: float) -> SegmentationResult:
        """Publish the result first (what consumers wait for), then the label image, overlay and 3D.

        Each is checked against the frame whose header it carries (every mask of its size);
        `scene` is the depth frame paired with it (None: this frame has no 3D). The cloud is
        built on the pool while this thread draws the images.
        """
        start = time.perf_counter()
        settings, hw = config.output_settings, frame.image_hw
        builder = builder or self.builder(frame.header, hw, config)
        result = builder.build(objects, scene, **timings)
        if result.header is not frame.header or (result.height, result.width) != hw:
            raise FrameMismatch(f"result for a {result.width}x{result.height} frame would carry the header "
                                f"of a {hw[1]}x{hw[0]} frame: withheld")
        result.postprocess_ms = (time.perf_counter() - start) * 1e3
        if frame.stamp_ns:
            now = self._node.get_clock().now().nanoseconds  # 0: sim time before its first /clock message
            result.latency_ms = (now - frame.stamp_ns) / 1e6 if now else math.nan
        self._pubs["result"].publish(result)
        cloud = self._pool.submit(self._cloud, builder, frame, config, scene)  # beside the images
        if self.subscribers("mask"):
            self._pubs["mask"].publish(label_image(builder.described, frame.header, hw, settings))
        if config.output.publish_overlay and self.subscribers("overlay"):
            self._pubs["overlay"].publish(overlay_image(frame.rgb, builder.described, frame.header))
        self._publish_3d(result, cloud.result(), config)
        self._publish_vision(result, config)
        return result

    def _cloud(self, builder: ResultBuilder, frame: RecentFrame, config: S.NodeConfig,
               scene: DepthScene | None) -> PointCloud2 | None:
        depth = config.depth
        if not (depth.enabled and self.subscribers("points")):
            return None
        return cloud_message(scene, builder.solids, depth.cloud_voxel_size,
                             frame.rgb if depth.cloud_rgb else None, frame.header)

    def _publish_3d(self, result: SegmentationResult, cloud: PointCloud2 | None, config: S.NodeConfig) -> None:
        """Every frame updates the 3D outputs; without depth: an empty cloud, markers deleted, no detections."""
        if not config.depth.enabled:
            return
        if cloud is not None:
            self._pubs["points"].publish(cloud)
        if self.subscribers("markers"):
            self._pubs["markers"].publish(marker_array(result))
        if self.subscribers("detections_3d"):
            self._pubs["detections_3d"].publish(vision.detection_3d_array(result))

    def _publish_vision(self, result: SegmentationResult, config: S.NodeConfig) -> None:
        if "detections" not in self._pubs:
            return
        if self.subscribers("detections"):
            self._pubs["detections"].publish(vision.detection_2d_array(result))
        labels = vision.label_map(result)
        if labels != self._labels_sent:
            self._pubs["label_info"].publish(vision.label_info(result.header, labels,
                                                               config.output.score_threshold))
            self._labels_sent = labels

    def close(self) -> None:
        """Destroy every publisher and stop the describing threads."""
        for publisher in self._pubs.values():
            self._node.destroy_publisher(publisher)
        self._pubs = {}
        self._pool.shutdown(wait=True)
