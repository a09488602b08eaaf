"""SegmentationResult -> vision_msgs (Detection2DArray, Detection3DArray, LabelInfo), where vision_msgs is installed.

vision_msgs ships with ROS 2 desktop on robots; it is optional here. Everything each message
carries (which objects, their headers, ids, classes, scores, boxes) is worked out by the plain
functions below, which need no vision_msgs and are tested wherever the suite runs; the builders
only copy those records into the message classes, field for field.
"""
from __future__ import annotations

from dataclasses import dataclass

from std_msgs.msg import Header

from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject

try:
    from vision_msgs.msg import (
        BoundingBox2D,
        BoundingBox3D,
        Detection2D,
        Detection2DArray,
        Detection3D,
        Detection3DArray,
        LabelInfo,
        ObjectHypothesisWithPose,
        VisionClass,
    )
except ImportError:
    Detection2DArray = None


def available() -> bool:
    """Whether vision_msgs is importable (the node then publishes these outputs)."""
    return Detection2DArray is not None


def box_2d(obj: SegmentedObject) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return ((centre x, centre y), (width, height)) of the mask's box, in pixel-edge coordinates.

    The box covers columns x_offset .. x_offset + width - 1, so its left edge is x_offset and
    its centre x_offset + width / 2 (as detectors' xyxy boxes are converted).
    """
    box = obj.box
    return (box.x_offset + box.width / 2, box.y_offset + box.height / 2), (float(box.width), float(box.height))


def box_3d(obj: SegmentedObject) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Return (centre, size) of the axis-aligned box around the object's 3D points, metres."""
    low, high = obj.min_3d, obj.max_3d
    centre = ((low.x + high.x) / 2, (low.y + high.y) / 2, (low.z + high.z) / 2)
    return centre, (high.x - low.x, high.y - low.y, high.z - low.z)


def header_3d(result: SegmentationResult) -> Header:
    """Return the header of a result's 3D outputs: its depth frame's, or the colour frame's if none was paired."""
    depth = result.depth_header
    return depth if depth.frame_id or depth.stamp.sec or depth.stamp.nanosec else result.header


def class_name(obj: SegmentedObject) -> str:
    """Name the hypothesis' class: the prompt's label, or 'object <id>' when it had none."""
    return obj.label or f"object {obj.object_id}"


def label_map(result: SegmentationResult) -> tuple[tuple[int, str], ...]:
    """Label-image value -> class name for every object in the result (ids are label values)."""
    return tuple((obj.object_id, class_name(obj)) for obj in result.objects)


@dataclass(frozen=True)
class Detection:
    """What one Detection2D or Detection3D carries: its header, id, one hypothesis and its box."""

    header: Header
    id: str
    class_id: str
    score: float
    centre: tuple[float, ...]  # (x, y) pixels, or (x, y, z) metres
    size: tuple[float, ...]


def detections_2d(result: SegmentationResult) -> list[Detection]:
    """Describe the visible objects in the colour frame: id = object id, box from the mask, label, score."""
    return [Detection(result.header, str(obj.object_id), class_name(obj), float(obj.score), *box_2d(obj))
            for obj in result.objects if obj.visible]


def detections_3d(result: SegmentationResult) -> list[Detection]:
    """Describe the objects with 3D, in the depth frame: box = their points' axis-aligned extent."""
    return [Detection(header_3d(result), str(obj.object_id), class_name(obj), float(obj.score), *box_3d(obj))
            for obj in result.objects if obj.has_3d]


def _hypothesis(detection: Detection):
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = detection.class_id, detection.score
    return hypothesis


def detection_2d_array(result: SegmentationResult):
    """Detection2DArray of `detections_2d`."""
    detections = []
    for found in detections_2d(result):
        bbox = BoundingBox2D(size_x=found.size[0], size_y=found.size[1])
        bbox.center.position.x, bbox.center.position.y = found.centre
        detections.append(Detection2D(header=found.header, results=[_hypothesis(found)], bbox=bbox, id=found.id))
    return Detection2DArray(header=result.header, detections=detections)


def detection_3d_array(result: SegmentationResult):
    """Detection3DArray of `detections_3d` (identity orientation: the boxes are axis-aligned)."""
    detections = []
    for found in detections_3d(result):
        bbox = BoundingBox3D()
        bbox.center.position.x, bbox.center.position.y, bbox.center.position.z = found.centre
        bbox.center.orientation.w = 1.0
        bbox.size.x, bbox.size.y, bbox.size.z = found.size
        detections.append(Detection3D(header=found.header, results=[_hypothesis(found)], bbox=bbox, id=found.id))
    return Detection3DArray(header=header_3d(result), detections=detections)


def label_info(header: Header, labels: tuple[tuple[int, str], ...], threshold: float):
    """LabelInfo for ~/mask: which label-image value is which class (published transient local)."""
    return LabelInfo(header=header, threshold=float(threshold),
                     class_map=[VisionClass(class_id=object_id, class_name=name) for object_id, name in labels])
