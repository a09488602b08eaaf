"""Overlay drawing for people: tinted masks, outlines, ids and labels."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from sam2_ros.core.contours import find_contours


@dataclass
class DrawnObject:
    """What the overlay shows of one object."""

    object_id: int
    mask: np.ndarray  # (H, W) bool
    label: str = ""
    box: tuple[int, int, int, int] | None = None  # x, y, width, height of the mask, when known already
    outline: list[np.ndarray] | None = None  # its (N, 2) int32 polygons in the image, when known already


def color_of(object_id: int) -> tuple[int, int, int]:
    """Give each id a stable, well-separated RGB colour (golden-ratio hue steps)."""
    hue = (object_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def overlay(image: np.ndarray, objects: Sequence[DrawnObject], alpha: float = 0.45,
            banner: str = "", canvas: np.ndarray | None = None) -> np.ndarray:
    """RGB image with each mask tinted, outlined and tagged with its id and label.

    Each mask is blended with the camera image within its own box only (a later object's tint
    wins where masks overlap): the cost follows the objects' size, not the frame's. An object's
    box and outline are found here unless it comes with them (a result has found them). It is
    drawn on `canvas` when given (a copy of `image` already, e.g. an output message's pixels),
    else on a new copy.
    """
    canvas = np.array(image, dtype=np.uint8, copy=True) if canvas is None else canvas
    outlines = {}
    for obj in objects:
        x, y, w, h = obj.box if obj.box is not None else cv2.boundingRect(obj.mask.view(np.uint8))
        if w == 0:
            continue
        mask, original = obj.mask[y:y + h, x:x + w], image[y:y + h, x:x + w]
        tint = cv2.rectangle(np.empty_like(original), (0, 0), (w, h), color_of(obj.object_id), cv2.FILLED)
        region = np.ascontiguousarray(canvas[y:y + h, x:x + w])  # OpenCV writes into contiguous arrays only
        cv2.copyTo(cv2.addWeighted(tint, alpha, original, 1 - alpha, 0), mask.view(np.uint8), region)
        canvas[y:y + h, x:x + w] = region
        outlines[obj.object_id] = obj.outline if obj.outline is not None else \
            [c.points.astype(np.int32) + (x, y) for c in find_contours(mask)]
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for obj in objects:
        color = color_of(obj.object_id)
        drawn = outlines.get(obj.object_id, [])
        cv2.drawContours(canvas, drawn, -1, color, thickness, cv2.LINE_AA)
        if drawn:
            x, y, _, _ = cv2.boundingRect(np.concatenate(drawn))
            text = f"{obj.object_id} {obj.label}".strip()
            _put_text(canvas, text, (x, max(y - 4, 12)), color)
    if banner:
        _put_text(canvas, banner, (8, 20), (255, 64, 64))
    return canvas


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int]) -> None:
    """Text with a dark outline so it reads on any background."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    cv2.putText(canvas, text, origin, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, font, scale, color, 1, cv2.LINE_AA)
