"""Prompt messages from users and detectors -> core prompts."""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PointStamped

from sam2_ros.core.prompts import ASSIGN_NEW_ID, FOREGROUND, Prompt, PromptError
from sam2_ros.ros.conversions import ImageError, image_to_array
from sam2_ros_interfaces.msg import Prompt as PromptMsg


def stamp_ns(header) -> int:
    """Return a header's stamp in nanoseconds; 0 means 'the newest frame'."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def from_prompt_msg(msg: PromptMsg) -> Prompt:
    """Convert a sam2_ros_interfaces/Prompt to a core prompt (checked later against its frame)."""
    points = np.array([[p.x, p.y] for p in msg.points], np.float32).reshape(-1, 2)
    labels = np.array(list(msg.point_labels), np.int32)
    box = None
    if len(msg.box):
        if len(msg.box) != 4:
            raise PromptError(f"box has {len(msg.box)} numbers: give [x_min, y_min, x_max, y_max]")
        box = np.array(msg.box, np.float32)
    mask = None
    if msg.mask.width or msg.mask.height:
        if msg.mask.encoding not in ("mono8", "8UC1"):
            raise PromptError(f"mask prompt must be mono8, got '{msg.mask.encoding}'")
        try:
            mask = image_to_array(msg.mask) > 0
        except ImageError as error:
            raise PromptError(f"mask prompt: {error}") from None
    return Prompt(object_id=msg.object_id, label=msg.label, points=points, point_labels=labels,
                  box=box, mask=mask)


def from_clicked_point(msg: PointStamped) -> Prompt:
    """Turn a click (pixel x, y, as rqt_image_view publishes) into a new object's foreground click."""
    return Prompt(object_id=ASSIGN_NEW_ID, points=np.array([[msg.point.x, msg.point.y]], np.float32),
                  point_labels=np.array([FOREGROUND], np.int32))


def from_detections(msg) -> list[Prompt]:
    """Turn vision_msgs/Detection2DArray boxes into box prompts labelled with the best hypothesis."""
    prompts = []
    for detection in msg.detections:
        center, box = detection.bbox.center, detection.bbox
        x, y = (center.position.x, center.position.y) if hasattr(center, "position") else (center.x, center.y)
        label = max(detection.results, key=lambda r: r.hypothesis.score).hypothesis.class_id \
            if detection.results else ""
        prompts.append(Prompt(object_id=ASSIGN_NEW_ID, label=label, box=np.array(
            [x - box.size_x / 2, y - box.size_y / 2, x + box.size_x / 2, y + box.size_y / 2], np.float32)))
    return prompts
