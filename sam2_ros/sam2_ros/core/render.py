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


def color_of(object_id: int) -> tuple[int, int, int]:
    """Give each id a stable, well-separated RGB colour (golden-ratio hue steps)."""
    hue = (object_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def overlay(image: np.ndarray, objects: Sequence[DrawnObject], alpha: float = 0.45,
            banner: str = "") -> np.ndarray:
    """RGB image with each mask tinted, outlined and tagged with its id and label."""
    canvas = np.array(image, dtype=np.uint8, copy=True)
    tint = canvas.copy()
    for obj in objects:
        tint[obj.mask] = color_of(obj.object_id)
    canvas = cv2.addWeighted(tint, alpha, canvas, 1 - alpha, 0)
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for obj in objects:
        color = color_of(obj.object_id)
        outlines = [c.points.astype(np.int32) for c in find_contours(obj.mask)]
        cv2.drawContours(canvas, outlines, -1, color, thickness, cv2.LINE_AA)
        if outlines:
            x, y, _, _ = cv2.boundingRect(np.concatenate(outlines))
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
