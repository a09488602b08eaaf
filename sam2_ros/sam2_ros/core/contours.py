"""Mask geometry for consumers: contours with holes, box, area, centroid, COCO RLE."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Contour:
    """One closed boundary polygon in pixel coordinates (x, y)."""

    points: np.ndarray  # (N, 2) float32
    is_hole: bool
    parent: int  # index of the enclosing outer contour for a hole, -1 for an outer one


@dataclass
class MaskGeometry:
    """What a manipulation or navigation stack wants to know about a mask."""

    box: tuple[int, int, int, int]  # x, y, width, height; zeros for an empty mask
    area: int  # pixels
    centroid: tuple[float, float]  # x, y; (nan, nan) for an empty mask
    contours: list[Contour]


def find_contours(mask: np.ndarray, epsilon: float = 0.0, min_area: float = 0.0) -> list[Contour]:
    """Outer boundaries and holes of a binary mask.

    `epsilon` simplifies polygons (Douglas-Peucker tolerance in pixels, 0 keeps every
    vertex); `min_area` drops outer regions (with their holes) and holes of fewer pixels.
    """
    found, hierarchy = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8),
                                        cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    parents = hierarchy[0][:, 3]
    outer = parents < 0  # RETR_CCOMP: two levels, every hole's parent is an outer boundary
    keep = (_pixel_areas(found, outer, mask) >= min_area if min_area > 0 else np.ones(len(found), bool))
    keep &= outer | keep[parents]  # a hole goes with its region
    order = np.concatenate([np.flatnonzero(keep & outer), np.flatnonzero(keep & ~outer)])
    ours = np.full(len(found), -1)  # outer contours first, so holes can name their parent
    ours[order] = np.arange(len(order))
    contours = []
    for index in order:
        polygon = cv2.approxPolyDP(found[index], epsilon, closed=True) if epsilon > 0 else found[index]
        contours.append(Contour(points=polygon.reshape(-1, 2).astype(np.float32), is_hole=not outer[index],
                                parent=-1 if outer[index] else int(ours[parents[index]])))
    return contours


def _pixel_areas(found, outer: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixels of each region (mask pixels within its outer boundary) or hole (background within it).

    Not the polygon's area: a boundary runs through pixel centres, so a 3x3 speck's polygon
    has area 4 and a one-pixel-wide line's has 0.
    """
    binary = np.asarray(mask, bool)
    areas = np.empty(len(found), np.int64)
    for index, contour in enumerate(found):
        x, y, w, h = cv2.boundingRect(contour)
        inside = np.zeros((h, w), np.uint8)
        cv2.fillPoly(inside, [contour - np.array([x, y], contour.dtype)], 1)
        crop = binary[y:y + h, x:x + w]
        areas[index] = np.count_nonzero(inside.astype(bool) & (crop if outer[index] else ~crop))
    return areas


def describe(mask: np.ndarray, epsilon: float = 0.0, min_area: float = 0.0) -> MaskGeometry:
    """Box, area, centroid and contours of a binary mask.

    Moments and contours are worked out on the mask's box alone (OpenCV takes what lies outside
    an image as background, as it is outside the box), so the cost follows the object's size.
    """
    binary = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    x, y, w, h = (int(v) for v in cv2.boundingRect(binary))
    if w == 0:
        return MaskGeometry(box=(0, 0, 0, 0), area=0, centroid=(float("nan"),) * 2, contours=[])
    block = binary[y:y + h, x:x + w]
    moments = cv2.moments(block, binaryImage=True)
    area = int(moments["m00"])
    contours = find_contours(block, epsilon, min_area)
    for contour in contours:
        contour.points += np.float32([x, y])
    return MaskGeometry(box=(x, y, w, h), area=area,
                        centroid=(moments["m10"] / area + x, moments["m01"] / area + y), contours=contours)

