"""Prompts for one object: points, a box, a mask, any mix, checked against the image."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

ASSIGN_NEW_ID = -1  # object_id that asks for a fresh id
BACKGROUND, FOREGROUND = 0, 1


class PromptError(ValueError):
    """A prompt that cannot be applied; the message says why."""


@dataclass(frozen=True)
class Prompt:
    """What a user says about one object on one frame (pixel coordinates of that frame)."""

    object_id: int = ASSIGN_NEW_ID
    label: str = ""
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (N, 2) x, y
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # (N,) 1 fg, 0 bg
    box: np.ndarray | None = None  # (4,) x_min, y_min, x_max, y_max
    mask: np.ndarray | None = None  # (H, W) bool at the image's resolution
    mask_logits: np.ndarray | None = None  # SAM 2's low-res logits of an earlier result
    text: str = ""  # phrases for the text detector ("cup . red ball"): a prompt of its own, with nothing else

    @property
    def is_single_click(self) -> bool:
        """One point and nothing else: ambiguous, so SAM 2's multi-mask output helps."""
        return (len(self.points) == 1 and self.box is None and self.mask is None
                and self.mask_logits is None)


def _describe(prompt: Prompt) -> str:
    return "new object" if prompt.object_id == ASSIGN_NEW_ID else f"object {prompt.object_id}"


def validate(prompt: Prompt, image_hw: tuple[int, int]) -> Prompt:
    """Return the prompt with points and box clipped to the image, or raise PromptError."""
    height, width = image_hw
    who = _describe(prompt)
    if prompt.text:
        raise PromptError("a text prompt finds objects for tracking: only ~/add_objects and the prompt topic "
                          "take one, in track or image mode, never beside points, a box or a mask")
    if prompt.object_id != ASSIGN_NEW_ID and prompt.object_id < 1:
        raise PromptError(f"object id {prompt.object_id} is invalid: ids start at 1 "
                          f"(use {ASSIGN_NEW_ID} to get a new one)")
    points = np.asarray(prompt.points, dtype=np.float32).reshape(-1, 2) \
        if np.size(prompt.points) else np.zeros((0, 2), np.float32)
    labels = np.asarray(prompt.point_labels).reshape(-1)
    box = None if prompt.box is None else np.asarray(prompt.box, dtype=np.float32).reshape(-1)
    if len(points) == 0 and box is None and prompt.mask is None and prompt.mask_logits is None:
        raise PromptError(f"prompt for {who} is empty: give points, a box or a mask")
    if len(labels) != len(points):
        raise PromptError(f"prompt for {who} has {len(points)} points but {len(labels)} point labels")
    if not np.all(np.isfinite(points)):
        raise PromptError(f"prompt for {who} has a non-finite point coordinate: {points.tolist()}")
    bad_labels = sorted(set(labels.tolist()) - {BACKGROUND, FOREGROUND})
    if bad_labels:
        raise PromptError(f"prompt for {who} has point labels {bad_labels}: "
                          "use 1 (foreground) or 0 (background)")
    inside = [bool(len(points)) and bool(np.any((points[:, 0] >= 0) & (points[:, 0] < width)
                                                & (points[:, 1] >= 0) & (points[:, 1] < height)))]
    if box is not None:
        if box.shape != (4,):
            raise PromptError(f"prompt for {who} has a box of {box.size} numbers: "
                              "give [x_min, y_min, x_max, y_max]")
        if not np.all(np.isfinite(box)):
            raise PromptError(f"prompt for {who} has a non-finite box: {box.tolist()}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise PromptError(f"prompt for {who} has an inverted or empty box {box.tolist()}: "
                              "x_max must exceed x_min and y_max y_min")
        inside.append(bool(box[0] < width and box[2] > 0 and box[1] < height and box[3] > 0))
        box = np.clip(box, 0, [width, height, width, height]).astype(np.float32)
    mask = prompt.mask
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != (height, width):
            shape = "x".join(map(str, mask.shape[::-1]))
            raise PromptError(f"prompt for {who} has a {shape} mask for a {width}x{height} "
                              "image: the mask must match the image")
        inside.append(bool(mask.any()))
        if not mask.any():
            raise PromptError(f"prompt for {who} has an empty mask: no pixel is set")
    if prompt.mask_logits is not None:
        logits = np.asarray(prompt.mask_logits, dtype=np.float32)
        if not np.all(np.isfinite(logits)):
            raise PromptError(f"prompt for {who} has non-finite mask logits")
        inside.append(True)
    if not any(inside):
        raise PromptError(f"prompt for {who} falls entirely outside the {width}x{height} image")
    points = np.clip(points, 0, [width - 1, height - 1]).astype(np.float32)
    return replace(prompt, points=points, point_labels=labels.astype(np.int32), box=box, mask=mask)


def rescale(prompt: Prompt, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Prompt:
    """Move a prompt given in the pixels of one frame size to another (camera resolution change).

    Points and boxes keep their place relative to the image; a mask is resized (nearest
    neighbour, so it stays binary). SAM 2's low-res logits do not depend on the frame size.
    """
    if tuple(from_hw) == tuple(to_hw):
        return prompt
    (from_h, from_w), (to_h, to_w) = from_hw, to_hw
    scale = np.array([to_w / from_w, to_h / from_h], np.float32)
    points = (np.asarray(prompt.points, np.float32).reshape(-1, 2) * scale).astype(np.float32)
    box = None if prompt.box is None else (np.asarray(prompt.box, np.float32) * np.tile(scale, 2))
    mask = None if prompt.mask is None else cv2.resize(
        np.asarray(prompt.mask, np.uint8), (to_w, to_h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return replace(prompt, points=points, box=box, mask=mask)


@dataclass(frozen=True)
class Detections:
    """Box prompts from a detector, best score first, and why any boxes were dropped."""

    prompts: list[Prompt]
    dropped: list[str]
