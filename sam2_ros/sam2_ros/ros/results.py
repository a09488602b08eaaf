"""Core results -> SegmentationResult, label image and overlay messages."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from geometry_msgs.msg import Point32
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from sam2_ros.core.contours import describe
from sam2_ros.core.render import DrawnObject, overlay
from sam2_ros.ros.conversions import array_to_image
from sam2_ros_interfaces.msg import Contour, SegmentationResult, SegmentedObject


class ObjectResult(Protocol):
    """What the segmenter and the tracker both return per object."""

    object_id: int
    label: str
    mask: np.ndarray
    score: float
    presence: float


@dataclass(frozen=True)
class OutputSettings:
    """How masks become messages (node parameters)."""

    score_threshold: float = 0.0  # masks scoring below are reported as not visible
    contour_epsilon: float = 0.0  # polygon simplification tolerance, pixels
    min_area: float = 0.0  # smaller regions and holes are left out of contours, pixels
    mask_encoding: str = "mono8"  # label image: mono8 (ids <= 255) or 16UC1


def shown(obj: ObjectResult, settings: OutputSettings) -> np.ndarray:
    """Return the mask as published: empty when SAM 2 finds the object absent or scores it too low."""
    if obj.presence <= 0.5 or obj.score < settings.score_threshold:
        return np.zeros_like(obj.mask)
    return obj.mask


def segmented_object(obj: ObjectResult, settings: OutputSettings, header: Header) -> SegmentedObject:
    """Build one object's message: geometry, contours and the mask cropped to its box."""
    mask = shown(obj, settings)
    geometry = describe(mask, settings.contour_epsilon, settings.min_area)
    x, y, w, h = geometry.box
    msg = SegmentedObject(object_id=int(obj.object_id), label=obj.label, score=float(obj.score),
                          presence=float(obj.presence), visible=geometry.area > 0,
                          box=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
                          area=geometry.area)
    if geometry.area:
        msg.centroid = Point32(x=float(geometry.centroid[0]), y=float(geometry.centroid[1]))
        msg.mask = array_to_image((mask[y:y + h, x:x + w] * 255).astype(np.uint8), "mono8", header)
    msg.contours = [Contour(points=[Point32(x=float(px), y=float(py)) for px, py in c.points],
                            is_hole=c.is_hole, parent=c.parent) for c in geometry.contours]
    return msg


def result_message(objects: Sequence[ObjectResult], header: Header, image_hw: tuple[int, int],
                   settings: OutputSettings, **timings: float) -> SegmentationResult:
    """Build the result of one frame, with the source image's header unchanged."""
    return SegmentationResult(header=header, height=image_hw[0], width=image_hw[1],
                              objects=[segmented_object(o, settings, header) for o in objects],
                              **timings)


def label_image(objects: Sequence[ObjectResult], header: Header, image_hw: tuple[int, int],
                settings: OutputSettings) -> Image:
    """Build the label image: pixel = object id (0 background); a higher score wins overlaps."""
    dtype = np.uint8 if settings.mask_encoding == "mono8" else np.uint16
    labels = np.zeros(image_hw, dtype)
    for obj in sorted(objects, key=lambda o: o.score):
        labels[shown(obj, settings)] = obj.object_id
    return array_to_image(labels, settings.mask_encoding, header)


def overlay_image(rgb: np.ndarray, objects: Sequence[ObjectResult], header: Header,
                  settings: OutputSettings) -> Image:
    """Draw every visible mask on the camera image, for RViz."""
    drawn = [DrawnObject(o.object_id, shown(o, settings), o.label) for o in objects]
    return array_to_image(overlay(rgb, drawn), "rgb8", header)
