"""Prompt messages from users and detectors -> core prompts."""
from __future__ import annotations

import math

import numpy as np

from sam2_ros.core.prompts import ASSIGN_NEW_ID, Detections, Prompt, PromptError
from sam2_ros.core.text import TextError, phrases_of
from sam2_ros.ros.conversions import DEFAULT_MAX_PIXELS, ImageError, check_size, image_to_array
from sam2_ros_interfaces.msg import Prompt as PromptMsg

DEFAULT_MAX_POINTS = 64
MAX_LABEL_CHARS = 256


def stamp_ns(header) -> int:
    """Return a header's stamp in nanoseconds; 0 means 'the newest frame'."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def from_prompt_msg(msg: PromptMsg, max_points: int = DEFAULT_MAX_POINTS,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> Prompt:
    """Convert a sam2_ros_interfaces/Prompt to a core prompt (checked later against its frame).

    Sizes are checked first, before anything the size of the message is built: each point costs
    SAM 2 decoder time, and a mask image can declare any size.
    """
    if len(msg.points) > max_points:
        raise PromptError(f"prompt has {len(msg.points)} points, over the limit of {max_points} "
                          "(max_prompt_points)")
    if len(msg.label) > MAX_LABEL_CHARS:
        raise PromptError(f"label of {len(msg.label)} characters is over the limit of {MAX_LABEL_CHARS}")
    if msg.text:
        try:
            phrases_of(msg.text)  # refused here, before it is queued (the session reads it again)
        except TextError as error:
            raise PromptError(str(error)) from None
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
            check_size(msg.mask.width, msg.mask.height, max_pixels, what="mask prompt")
            mask = image_to_array(msg.mask) > 0
        except ImageError as error:
            raise PromptError(f"mask prompt: {error}") from None
    return Prompt(object_id=msg.object_id, label=msg.label, points=points, point_labels=labels,
                  box=box, mask=mask, text=msg.text)


def from_detections(msg) -> Detections:
    """Turn vision_msgs/Detection2DArray boxes into box prompts labelled with the best hypothesis.

    A box that cannot be a prompt (not finite, no area) is dropped alone, never the others.
    """
    scored, dropped = [], []
    for index, detection in enumerate(msg.detections):
        center, box = detection.bbox.center, detection.bbox
        x, y = (center.position.x, center.position.y) if hasattr(center, "position") else (center.x, center.y)
        best = max(detection.results, key=lambda r: r.hypothesis.score) if detection.results else None
        values = (x, y, box.size_x, box.size_y)
        if not all(math.isfinite(v) for v in values):
            dropped.append(f"detection {index}: non-finite box {list(values)}")
            continue
        if box.size_x <= 0 or box.size_y <= 0:
            dropped.append(f"detection {index}: box of size {box.size_x} x {box.size_y} has no area")
            continue
        corners = np.array([x - box.size_x / 2, y - box.size_y / 2, x + box.size_x / 2, y + box.size_y / 2],
                           np.float64)
        if np.any(np.abs(corners) > np.finfo(np.float32).max):
            dropped.append(f"detection {index}: box {corners.tolist()} overflows float32")
            continue
        score = best.hypothesis.score if best is not None else 0.0
        prompt = Prompt(object_id=ASSIGN_NEW_ID, label=best.hypothesis.class_id if best is not None else "",
                        box=corners.astype(np.float32))
        scored.append((-score if math.isfinite(score) else math.inf, index, prompt))
    return Detections([prompt for _, _, prompt in sorted(scored, key=lambda s: s[:2])], dropped)
