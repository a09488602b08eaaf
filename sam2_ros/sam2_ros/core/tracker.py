"""Streaming tracker: SAM 2's memory on an endless camera stream, with bounded state.

Each object keeps its own memory bank, as in Meta's SAM2VideoPredictor (SAM 2.1 tracks
objects independently), so objects can be added, corrected or removed at any frame. Only
what SAM 2 can still attend to is kept: the last memory frames (with SAM 2's temporal
stride), the object pointers of the last `max_obj_ptrs_in_encoder` frames, and a capped
number of conditioning (prompted) frames. No images and no older outputs are kept.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sam2.utils.misc import fill_holes_in_mask_scores

from sam2_ros.core.compiled_step import CompiledStep, step_for
from sam2_ros.core.encoding import EncodedFrame, encode
from sam2_ros.core.model import LoadedModel
from sam2_ros.core.prompts import ASSIGN_NEW_ID, Prompt, validate
from sam2_ros.core.transfer import to_host

# Meta's hole filling (fill_hole_area) needs sam2's optional CUDA extension. Without it Meta's
# predictor warns and skips the step on every run; the tracker skips it silently, with the same
# masks, and the node says so once in its own words.
HOLE_FILLING = importlib.util.find_spec("sam2._C") is not None
HOLE_FILLING_NOTE = ("sam2 was installed without its CUDA extension (sam2._C): SAM 2's filling of small "
                     "holes in masks is skipped, as Meta's predictor skips it on such an install; "
                     "masks are otherwise identical")

# Image tokens per tracking step on the CPU: 4 objects at input size 256, 1 from 512 up. Memory
# attention widens every token eightfold in its MLP, so a step outgrows the caches sooner than a
# decoder call. Measured at 256 with 8 objects (tracking only, frames alternated): 8 per step
# 567 ms, 4 per step 491 ms, 2 per step 553 ms, one by one 665 ms; at 1024 twos were still slower
# than one by one.
CPU_STEP_TOKENS = 1024

# A live stream has no length; SAM 2 only uses it to cap object pointers at
# min(num_frames, max_obj_ptrs_in_encoder), which any stream longer than that cap reaches.
_ENDLESS = sys.maxsize


def first_free_id(used) -> int:
    """Return the smallest id >= 1 not in use, so ids stay small enough for a mono8 label image."""
    object_id = 1
    while object_id in used:
        object_id += 1
    return object_id


class TrackerError(ValueError):
    """An operation the tracker refuses; the message says why."""


def check_trackable(prompt: Prompt) -> None:
    """Refuse what SAM 2's video predictor cannot take: earlier logits, or a mask mixed with clicks."""
    if prompt.mask_logits is not None or (prompt.mask is not None and (len(prompt.points)
                                                                       or prompt.box is not None)):
        raise TrackerError("the tracker takes points and/or a box, or a binary mask alone")


@dataclass
class TrackedObject:
    """One object's identity and SAM 2 memory bank."""

    object_id: int
    label: str
    cond: dict[int, dict] = field(default_factory=dict)  # prompted frames' outputs
    non_cond: dict[int, dict] = field(default_factory=dict)  # tracked frames' outputs
    pending: dict | None = None  # output of a prompt on the current frame, memory not yet encoded
    pending_is_cond: bool = False


@dataclass
class TrackedMask:
    """One object on one frame."""

    object_id: int
    label: str
    mask: np.ndarray  # (H, W) bool, empty when the object is not visible
    score: float  # SAM 2's predicted IoU of the mask
    presence: float  # SAM 2's object-presence probability
    logits: np.ndarray  # (1, S/4, S/4) low-res mask logits


@dataclass
class FrameResult:
    """Every tracked object on one frame, in ascending object id."""

    frame_index: int
    objects: list[TrackedMask]
    encode_ms: float
    track_ms: float
    dropped_cond_frames: dict[int, list[int]] = field(default_factory=dict)  # object id -> frames


class StreamingTracker:
    """Track prompted objects frame by frame; prompts apply to the newest frame."""

    def __init__(self, model: LoadedModel, max_objects: int = 16, max_cond_frames: int = 8,
                 fill_hole_area: int = 8, corrections_as_conditioning: bool = True, batch_objects: bool = True,
                 step: CompiledStep | None = None):
        if max_objects < 1 or max_cond_frames < 1:
            raise ValueError("max_objects and max_cond_frames must be at least 1")
        self.model = model
        # a model loaded with `compile`: every shape of this tracker's steps is compiled here, not on a camera frame
        largest_group = model.per_call(max_objects, CPU_STEP_TOKENS) if batch_objects else 1
        self.step = step if step is not None else step_for(model, largest_group, max_cond_frames)
        self.max_objects = max_objects
        self.max_cond_frames = max_cond_frames
        self.fill_hole_area = fill_hole_area
        self.corrections_as_conditioning = corrections_as_conditioning
        self.batch_objects = batch_objects  # False: Meta's object-by-object loop (the reference)
        self.objects: dict[int, TrackedObject] = {}
        self.frame_index = -1
        self._frame: EncodedFrame | None = None
        self._features: tuple | None = None  # (vision_feats, vision_pos, feat_sizes) of _frame
        self._last: dict[int, TrackedMask] = {}
        self._maskmem_pos_enc: list[torch.Tensor] | None = None  # same for every frame and object

    # ----- the stream -----
    @torch.inference_mode()
    def track(self, image: np.ndarray, frame: EncodedFrame | None = None,
              on_object: Callable[[TrackedMask], None] | None = None) -> FrameResult:
        """Take the next camera frame: encode it (unless given) and track every object on it.

        `on_object` gets each object's mask as soon as it exists, so a caller can post-process
        it while SAM 2 tracks the next object.
        """
        frame = frame if frame is not None else encode(self.model, image)
        with self.transaction(), (self.step.active() if self.step is not None else nullcontext()):
            dropped = self._finish_frame()
            self.frame_index += 1
            self._frame = frame
            _, feats, pos, sizes = self.model.sam._prepare_backbone_features(frame.backbone)
            self._features = (feats, pos, sizes)
            start = time.perf_counter()
            self._last = {}
            groups = self._groups() if self.batch_objects else [[obj] for obj in self.objects.values()]
            # On CUDA masks leave the device once per frame (one synchronisation); on the CPU each
            # batch's masks go out at once, so the caller's post-processing overlaps the next batch.
            deferred: list | None = [] if self.model.device.type == "cuda" else None
            with self.model.sam.memory_attention.one_frame():  # what depends on the frame alone, once
                for group in groups:
                    self._track_group(group, on_object, deferred)
            if deferred:
                self._hand_over(deferred, on_object)
        return FrameResult(self.frame_index, self.current(), frame.encode_ms,
                           (time.perf_counter() - start) * 1e3, dropped)

    def _groups(self) -> list[list[TrackedObject]]:
        """Objects whose memories have the same layout, so one batched SAM 2 step serves them all.

        SAM 2 reads, per object, the conditioning frames (chosen by frame index), the memory of
        given earlier frames and the object pointers of a window of them: objects prompted on the
        same frames and tracked since share all three. Others (added late, corrected) get a
        group of their own: grouping keeps every object's attention exactly its own, where
        padding would need an attention mask that SAM 2's memory attention does not take.
        """
        groups: dict[tuple, list[TrackedObject]] = {}
        for obj in self.objects.values():
            layout = (tuple(sorted(obj.cond)), tuple(sorted(obj.non_cond)),
                      tuple(sorted(t for t, out in obj.non_cond.items() if out.get("maskmem_features") is not None)))
            groups.setdefault(layout, []).append(obj)
        size = self.model.per_call(self.max_objects, CPU_STEP_TOKENS)  # on the CPU, what stays in cache
        return [group[first:first + size] for group in groups.values() for first in range(0, len(group), size)]

    def _track_group(self, group: list[TrackedObject], on_object, deferred: list | None) -> None:
        """One SAM 2 step (memory attention, mask decoder, memory encoder) for objects of one layout.

        A group of one is exactly Meta's per-object step (the reference path is groups of one).
        """
        size = len(group)
        # a compiled step takes a few batch sizes: the group is padded with its last object, whose copies are dropped
        steps = self.step.group_size(size) if self.step is not None else size
        stepped = group + [group[-1]] * (steps - size)
        feats, pos, _ = self._features
        if steps > 1:
            feats = [torch.cat([x] * steps, dim=1) for x in feats]  # (HW, 1, C) -> (HW, B, C)
            # SAM 2 reads only the last level's positions (memory attention); the high-res levels'
            # would be megabytes of copies per frame, so they are views
            pos = [x.expand(-1, steps, -1) for x in pos[:-1]] + [torch.cat([pos[-1]] * steps, dim=1)]
        low_res, ious, high_res, obj_ptr, object_logits = self._sam_step(feats, pos, self._bank(stepped), False)
        memory_inputs = (high_res, object_logits)
        low_res, ious, obj_ptr, object_logits = (x[:size] for x in (low_res, ious, obj_ptr, object_logits))
        batch = (group, low_res, ious, object_logits)
        if deferred is None:  # the masks are final: their memory is for later frames
            self._hand_over([batch], on_object)
        else:
            deferred.append(batch)
        memory = self._encode_memory(feats, *memory_inputs, is_mask_from_pts=False)
        # A batch's slices are cloned, so each object's memory lives and dies with it; one object owns its tensors.
        own = (lambda x: x) if steps == 1 else torch.clone
        for i, obj in enumerate(group):
            obj.non_cond[self.frame_index] = {
                "pred_masks": own(low_res[i:i + 1]), "obj_ptr": own(obj_ptr[i:i + 1]),
                "object_score_logits": own(object_logits[i:i + 1]),
                "maskmem_features": own(memory[i:i + 1]), "maskmem_pos_enc": self._maskmem_pos_enc}
            self._forget(obj)

    def _bank(self, group: list[TrackedObject]) -> dict:
        """Return the memory SAM 2 reads for a group: one object's own bank as it is, a batch's stacked."""
        if len(group) == 1:  # nothing copied
            return {"cond_frame_outputs": group[0].cond, "non_cond_frame_outputs": group[0].non_cond}
        size = len(group)
        return {key: {t: self._stacked([getattr(o, attr)[t] for o in group], size) for t in getattr(group[0], attr)}
                for key, attr in (("cond_frame_outputs", "cond"), ("non_cond_frame_outputs", "non_cond"))}

    @staticmethod
    def _stacked(outputs: list[dict], size: int) -> dict:
        """One bank entry for a batch: each object's memory and pointer along the batch dimension."""
        stacked = {"obj_ptr": torch.cat([out["obj_ptr"] for out in outputs])}
        features = [out.get("maskmem_features") for out in outputs]
        stacked["maskmem_features"] = None if features[0] is None else torch.cat(features)
        if features[0] is not None:
            stacked["maskmem_pos_enc"] = [x.expand(size, *x.shape[1:]) for x in outputs[0]["maskmem_pos_enc"]]
        return stacked

    def _hand_over(self, batches: list[tuple], on_object) -> None:
        """Make the masks of these batches final (one device-to-host copy) and give them to the caller."""
        group = [obj for batch in batches for obj in batch[0]]
        low_res, ious, object_logits = (torch.cat([batch[k] for batch in batches]) for k in (1, 2, 3))
        for obj, result in zip(group, self._results(group, low_res, ious, object_logits)):
            self._last[obj.object_id] = result
            if on_object is not None:
                on_object(result)

    def _results(self, group: list[TrackedObject], low_res: torch.Tensor, ious: torch.Tensor,
                 object_logits: torch.Tensor) -> list[TrackedMask]:
        """Masks of one object or a batch at the frame's size, with their logits, scores and presences.

        Upsampled and thresholded on the device; everything leaves it in one transfer.
        """
        logits = low_res.float()
        masks = F.interpolate(logits, size=self._frame.image_hw, mode="bilinear", align_corners=False)[:, 0] > 0
        scores = ious.float().max(dim=1).values
        presence = torch.sigmoid(object_logits.float()).reshape(-1)
        masks, logits, scores, presence = to_host(masks, logits, scores, presence)
        return [TrackedMask(obj.object_id, obj.label, masks[i], float(scores[i]), float(presence[i]), logits[i])
                for i, obj in enumerate(group)]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: if the block raises, objects, memories and the newest frame are as before.

        A frame that fails part-way (out of memory on the third object) or a batch of prompts
        with one bad prompt then leaves no object half-updated. Outputs are replaced, never
        changed in place, except for memory that is re-encoded identically.
        """
        saved = (dict(self.objects), {i: (o.label, dict(o.cond), dict(o.non_cond), o.pending,
                                          o.pending_is_cond) for i, o in self.objects.items()},
                 self.frame_index, self._frame, self._features, dict(self._last))
        try:
            yield
        except BaseException:
            objects, banks, self.frame_index, self._frame, self._features, self._last = saved
            self.objects = objects
            for object_id, (label, cond, non_cond, pending, pending_is_cond) in banks.items():
                obj = objects[object_id]
                obj.label, obj.cond, obj.non_cond = label, cond, non_cond
                obj.pending, obj.pending_is_cond = pending, pending_is_cond
            raise

    @torch.inference_mode()
    def add_prompt(self, prompt: Prompt) -> tuple[int, FrameResult]:
        """Add a new object, or correct a tracked one, on the newest frame."""
        if self._frame is None:
            raise TrackerError("no frame yet: call track() with a camera frame before prompting")
        prompt = validate(prompt, self._frame.image_hw)
        check_trackable(prompt)
        object_id = prompt.object_id
        if object_id == ASSIGN_NEW_ID:
            object_id = first_free_id(self.objects)
        if object_id not in self.objects and len(self.objects) >= self.max_objects:
            raise TrackerError(f"cannot add object {object_id}: already tracking "
                               f"{len(self.objects)} objects (max_objects {self.max_objects})")
        start = time.perf_counter()
        with self.transaction():
            obj = self.objects.setdefault(object_id, TrackedObject(object_id, prompt.label))
            obj.label = prompt.label or obj.label
            init = self.frame_index not in obj.non_cond  # as SAM 2: not yet tracked on this frame
            feats, pos, _ = self._features
            if prompt.mask is not None:
                step = self._sam_step(feats, pos, self._bank([obj]), init, mask_inputs=self._mask_input(prompt.mask))
            else:
                previous = obj.pending or obj.non_cond.get(self.frame_index)
                prev_logits = None if previous is None else torch.clamp(previous["pred_masks"], -32.0, 32.0)
                step = self._sam_step(feats, pos, self._bank([obj]), init, self._point_input(prompt),
                                      prev_logits=prev_logits)
            low_res, ious, _, obj_ptr, object_logits = step  # the memory is encoded when the frame ends
            obj.pending = {"pred_masks": low_res, "obj_ptr": obj_ptr, "object_score_logits": object_logits,
                           "maskmem_features": None, "maskmem_pos_enc": None}
            obj.pending_is_cond = init or self.corrections_as_conditioning
            self._last[object_id] = self._results([obj], low_res, ious, object_logits)[0]
        return object_id, FrameResult(self.frame_index, self.current(), 0.0,
                                      (time.perf_counter() - start) * 1e3)

    def remove(self, object_id: int) -> None:
        """Stop tracking an object; its memory is freed."""
        if object_id not in self.objects:
            known = ", ".join(map(str, sorted(self.objects))) or "none"
            raise TrackerError(f"no object with id {object_id} (tracked ids: {known})")
        del self.objects[object_id]
        self._last.pop(object_id, None)

    def reset(self) -> None:
        """Forget every object; the stream and its frame counter go on."""
        self.objects.clear()
        self._last.clear()

    def retained_tensor_bytes(self) -> int:
        """Bytes of tensors held in every object's memory bank (for memory checks)."""
        seen, total = set(), 0
        for obj in self.objects.values():
            outputs = [*obj.cond.values(), *obj.non_cond.values(), obj.pending or {}]
            for out in outputs:
                for value in out.values():
                    for tensor in value if isinstance(value, list) else [value]:
                        if isinstance(tensor, torch.Tensor) and id(tensor) not in seen:
                            seen.add(id(tensor))
                            total += tensor.numel() * tensor.element_size()
        return total

    # ----- SAM 2 steps -----
    def _sam_step(self, feats: list, pos: list, bank: dict, init: bool, point_inputs: dict | None = None,
                  mask_inputs: torch.Tensor | None = None, prev_logits: torch.Tensor | None = None) -> tuple:
        """One SAM 2 track step (SAM2Base._track_step) on the current frame, for one object or a batch.

        Returns the low-resolution mask logits (holes filled), predicted IoUs, the high-resolution
        masks the memory encoder takes, object pointers and object-score logits.
        """
        sizes = self._features[2]
        with self.model.autocast():
            _, sam_outputs, _, _ = self.model.sam._track_step(
                self.frame_index, init, feats, pos, sizes, point_inputs, mask_inputs, bank, _ENDLESS, False,
                prev_logits)
            _, _, ious, low_res, high_res, obj_ptr, object_logits = sam_outputs
        if self.fill_hole_area > 0 and HOLE_FILLING:
            low_res = fill_holes_in_mask_scores(low_res, self.fill_hole_area)
        return low_res, ious, high_res, obj_ptr, object_logits

    def _encode_memory(self, feats: list, high_res_masks: torch.Tensor, object_logits: torch.Tensor,
                       is_mask_from_pts: bool) -> torch.Tensor:
        """Memory of this frame for later ones; stored in bfloat16, as Meta's predictor does."""
        with self.model.autocast():
            memory, pos_enc = self.model.sam._encode_new_memory(
                current_vision_feats=feats, feat_sizes=self._features[2], pred_masks_high_res=high_res_masks,
                object_score_logits=object_logits, is_mask_from_pts=is_mask_from_pts)
        if self._maskmem_pos_enc is None:  # the same for every frame and object
            self._maskmem_pos_enc = [x[0:1].clone() for x in pos_enc]
        return memory.to(torch.bfloat16)

    def _finish_frame(self) -> dict[int, list[int]]:
        """Encode the memory of prompts made on the frame that is ending, and file them."""
        dropped: dict[int, list[int]] = {}
        size = self.model.image_size
        for obj in self.objects.values():
            out, obj.pending = obj.pending, None
            if out is None:
                continue
            high_res = F.interpolate(out["pred_masks"], size=(size, size), mode="bilinear",
                                     align_corners=False)
            out["maskmem_features"] = self._encode_memory(self._features[0], high_res, out["object_score_logits"],
                                                          is_mask_from_pts=True)
            out["maskmem_pos_enc"] = self._maskmem_pos_enc
            if obj.pending_is_cond:
                obj.cond[self.frame_index] = out
                obj.non_cond.pop(self.frame_index, None)
                if len(obj.cond) > self.max_cond_frames:
                    dropped[obj.object_id] = self._cap_cond_frames(obj)
            else:
                obj.non_cond[self.frame_index] = out
        return dropped

    def _cap_cond_frames(self, obj: TrackedObject) -> list[int]:
        """Keep the first prompt (the object's anchor) and the newest ones SAM 2 attends to most."""
        frames = sorted(obj.cond)
        keep = {frames[0], *frames[-(self.max_cond_frames - 1):]} if self.max_cond_frames > 1 \
            else {frames[-1]}
        dropped = [t for t in frames if t not in keep]
        for t in dropped:
            del obj.cond[t]
        return dropped

    def _forget(self, obj: TrackedObject) -> None:
        """Drop tracked outputs that no later step can attend to.

        Kept: what a correction on this frame or the next frame reads; where only the
        object pointer is still read, only that.
        """
        sam, now = self.model.sam, self.frame_index
        stride = sam.memory_temporal_stride_for_eval
        memory_frames = {f - 1 for f in (now, now + 1)} | {
            ((f - 2) // stride) * stride - (t_rel - 2) * stride
            for f in (now, now + 1) for t_rel in range(2, sam.num_maskmem)}
        oldest_pointer = now - (sam.max_obj_ptrs_in_encoder - 1)
        for t in list(obj.non_cond):
            if t == now or t in memory_frames:
                continue
            if t >= oldest_pointer and sam.use_obj_ptrs_in_encoder:
                out = obj.non_cond[t]
                if out.get("maskmem_features") is not None:
                    obj.non_cond[t] = {"obj_ptr": out["obj_ptr"], "maskmem_features": None}
            else:
                del obj.non_cond[t]

    # ----- conversions -----
    def _point_input(self, prompt: Prompt) -> dict:
        """Points (box corners first) scaled to SAM 2's input size, as the video predictor does."""
        device, size = self.model.device, self.model.image_size
        height, width = self._frame.image_hw
        coords = [torch.as_tensor(prompt.points, dtype=torch.float32)]
        labels = [torch.as_tensor(prompt.point_labels, dtype=torch.int32)]
        if prompt.box is not None:
            coords.insert(0, torch.as_tensor(prompt.box, dtype=torch.float32).reshape(2, 2))
            labels.insert(0, torch.tensor([2, 3], dtype=torch.int32))
        points = torch.cat(coords)[None] / torch.tensor([width, height]) * size
        return {"point_coords": points.to(device), "point_labels": torch.cat(labels)[None].to(device)}

    def _mask_input(self, mask: np.ndarray) -> torch.Tensor:
        """Scale a full-resolution binary mask to SAM 2's input size (antialiased, thresholded)."""
        size = self.model.image_size
        tensor = torch.as_tensor(mask, dtype=torch.bool)[None, None].float().to(self.model.device)
        if tensor.shape[-2:] != (size, size):
            tensor = F.interpolate(tensor, size=(size, size), align_corners=False, mode="bilinear",
                                   antialias=True)
            tensor = (tensor >= 0.5).float()
        return tensor

    def current(self) -> list[TrackedMask]:
        """Every tracked object's latest result on the newest frame, in ascending id."""
        return [self._last[i] for i in sorted(self._last) if i in self.objects]
