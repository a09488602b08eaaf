"""Single-image segmentation: one encoding per frame, cached; prompts cost only the decoder."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sam2_ros.core.encoding import EncodedFrame, decoder_inputs, encode, for_prompts
from sam2_ros.core.model import LoadedModel
from sam2_ros.core.prompts import Prompt, validate

# SAM 2's own scale for turning a binary mask into logits (SAM2Base._use_mask_as_output).
_MASK_LOGIT_SCALE, _MASK_LOGIT_BIAS = 20.0, -10.0


@dataclass
class ObjectMask:
    """One object's segmentation on one frame."""

    object_id: int
    label: str
    mask: np.ndarray  # (H, W) bool at the image's resolution
    score: float  # SAM 2's predicted IoU
    presence: float  # SAM 2's object-presence probability
    logits: np.ndarray  # (1, S/4, S/4) low-res logits: feed back as mask_logits to refine


@dataclass
class Segmentation:
    """Every prompted object on one frame, with where the time went."""

    image_hw: tuple[int, int]
    objects: list[ObjectMask]
    encode_ms: float  # 0 when the frame's encoding came from the cache
    decode_ms: float


class FrameNotCached(KeyError):
    """A prompt refers to a frame whose encoding is no longer (or never was) kept."""

    def __str__(self) -> str:
        return str(self.args[0])


class Segmenter:
    """SAM 2 prompted segmentation with a bounded cache of recent frame encodings."""

    def __init__(self, model: LoadedModel, cache_size: int = 4, multimask_single_click: bool = True):
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.model = model
        self.cache_size = cache_size
        self.multimask_single_click = multimask_single_click
        self._frames: OrderedDict[Hashable, EncodedFrame] = OrderedDict()

    def add_frame(self, key: Hashable, image: np.ndarray) -> EncodedFrame:
        """Encode an RGB frame (unless cached) and keep it as the newest."""
        if key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        frame = encode(self.model, image)
        self.remember(key, frame)
        return frame

    def remember(self, key: Hashable, frame: EncodedFrame) -> None:
        """Cache an encoding made elsewhere (the tracker's), dropping the oldest beyond the cap."""
        self._frames[key] = for_prompts(self.model, frame)
        self._frames.move_to_end(key)
        while len(self._frames) > self.cache_size:
            self._frames.popitem(last=False)

    def frame(self, key: Hashable | None = None) -> EncodedFrame:
        """Return a cached frame by key; None means the newest."""
        if not self._frames:
            raise FrameNotCached("no frame has been encoded yet")
        if key is None:
            return next(reversed(self._frames.values()))
        if key not in self._frames:
            raise FrameNotCached(f"frame {key!r} is not among the {len(self._frames)} most recent "
                                 f"frames kept (cache_size {self.cache_size})")
        return self._frames[key]

    def segment(self, image: np.ndarray, prompts: Sequence[Prompt], key: Hashable = None) -> Segmentation:
        """Encode (or reuse) `image` and segment every prompt on it.

        With a key the encoding joins the cache; without one it is used once and not kept,
        so a one-off image never pushes a recent camera frame out of the cache.
        """
        cached = key is not None and key in self._frames
        frame = encode(self.model, image) if key is None else self.add_frame(key, image)
        result = self.predict(prompts, frame)
        result.encode_ms = 0.0 if cached else frame.encode_ms
        return result

    @torch.inference_mode()
    def predict(self, prompts: Sequence[Prompt],
                frame: EncodedFrame | Hashable | None = None) -> Segmentation:
        """Segment prompts on a cached frame: objects with alike prompts share decoder calls."""
        if not isinstance(frame, EncodedFrame):
            frame = self.frame(frame)
        start = time.perf_counter()
        prompts = [validate(prompt, frame.image_hw) for prompt in prompts]
        objects: list[ObjectMask | None] = [None] * len(prompts)
        groups: dict[tuple, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(_batch_signature(prompt), []).append(index)
        for alike in groups.values():
            size = self.model.per_call(len(alike))  # on the CPU, calls small enough to stay in cache
            for indices in (alike[first:first + size] for first in range(0, len(alike), size)):
                for index, result in zip(indices, self._decode(frame, [prompts[i] for i in indices])):
                    objects[index] = result
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
        return Segmentation(image_hw=frame.image_hw, objects=objects, encode_ms=0.0,
                            decode_ms=(time.perf_counter() - start) * 1e3)

    def _decode(self, frame: EncodedFrame, batch: list[Prompt]) -> list[ObjectMask]:
        """One prompt-encoder and mask-decoder call for prompts of the same shape."""
        sam, device = self.model.sam, self.model.device
        size = self.model.image_size
        height, width = frame.image_hw
        coords, labels = [], []
        for prompt in batch:
            parts_xy = [torch.as_tensor(prompt.points, device=device)]
            parts_label = [torch.as_tensor(prompt.point_labels, dtype=torch.int, device=device)]
            if prompt.box is not None:  # SAM 2 takes a box as two labelled corner points, first
                parts_xy.insert(0, torch.as_tensor(prompt.box, device=device).reshape(2, 2))
                parts_label.insert(0, torch.tensor([2, 3], dtype=torch.int, device=device))
            coords.append(torch.cat(parts_xy) / torch.tensor([width, height], device=device) * size)
            labels.append(torch.cat(parts_label))
        points = (torch.stack(coords), torch.stack(labels)) if len(coords[0]) else None
        masks_in = None
        if batch[0].mask_logits is not None or batch[0].mask is not None:
            masks_in = torch.stack([self._mask_input(prompt) for prompt in batch])
        multimask = self.multimask_single_click and batch[0].is_single_click
        image_embed, high_res = decoder_inputs(self.model, frame)
        with self.model.autocast():
            sparse, dense = sam.sam_prompt_encoder(points=points, boxes=None, masks=masks_in)
            low_res, iou, _, object_logits = sam.sam_mask_decoder(
                image_embeddings=image_embed, image_pe=sam.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=multimask, repeat_image=len(batch) > 1,
                high_res_features=high_res)
        low_res, iou = low_res.float(), iou.float()
        best = iou.argmax(dim=1)
        rows = torch.arange(len(batch), device=device)
        low_res, iou = low_res[rows, best][:, None], iou[rows, best]
        masks = F.interpolate(low_res, frame.image_hw, mode="bilinear", align_corners=False) > 0
        logits = torch.clamp(low_res, -32.0, 32.0)
        presence = torch.sigmoid(object_logits.float()).reshape(-1)
        masks, logits = masks[:, 0].cpu().numpy(), logits.cpu().numpy()
        iou, presence = iou.cpu().numpy(), presence.cpu().numpy()
        return [ObjectMask(object_id=prompt.object_id, label=prompt.label, mask=masks[i],
                           score=float(iou[i]), presence=float(presence[i]), logits=logits[i])
                for i, prompt in enumerate(batch)]

    def _mask_input(self, prompt: Prompt) -> torch.Tensor:
        """(1, S/4, S/4) logits from earlier logits or a binary full-resolution mask."""
        side = self.model.image_size // 4
        if prompt.mask_logits is not None:
            logits = torch.as_tensor(prompt.mask_logits, dtype=torch.float32, device=self.model.device)
            if logits.shape[-2:] != (side, side):
                raise ValueError(f"mask_logits must be {side}x{side} at image_size "
                                 f"{self.model.image_size}, got {tuple(logits.shape)}")
            return logits.reshape(1, side, side)
        mask = torch.as_tensor(prompt.mask, device=self.model.device).float()[None, None]
        low = F.interpolate(mask, (side, side), mode="bilinear", align_corners=False, antialias=True)
        return (low * _MASK_LOGIT_SCALE + _MASK_LOGIT_BIAS)[0]


def _batch_signature(prompt: Prompt) -> tuple:
    """Prompts with equal signatures stack into one decoder batch without padding.

    Padding would add 'not a point' tokens, which change SAM 2's masks.
    """
    return (len(prompt.points), prompt.box is not None,
            prompt.mask is not None or prompt.mask_logits is not None)
