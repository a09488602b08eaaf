"""Segment everything: every object SAM 2 finds on a frame by itself, from the frame's one encoding.

Meta's SAM2AutomaticMaskGenerator prompts a grid of points, keeps masks by predicted IoU and
stability, removes duplicates with box NMS and, with `min_mask_region_area`, fills small holes and
removes small islands (where sam2's CUDA extension is installed); it encodes the image itself first. Here its own
grid, transforms and filters (sam2.utils.amg) and torchvision's NMS run on an already encoded
frame (the node's), a few point batches at a time if need be (`EverythingPass`), so the masks
are Meta's and the encoder's work is not done twice. Two more savings, exact too: a mask whose
predicted IoU fails the threshold is never upsampled to the image's size (Meta's generator
upsamples all three masks of every point first, and filters after), and on the CPU a batch is
decoded a few points at a time. SAM 2's decoder copies the image embedding for every point and
runs elementwise work over each copy, so a batch of 64 points at input size 1024 streams
gigabytes through memory; chunks of a few points (`LoadedModel.per_call`) stay in cache and
halve the time there. Meta's output itself depends on how many points it decodes per call (small
matrix products round differently), by a pixel here and there: ours equals Meta's decoding as
many points per call as ours does.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    calculate_stability_score,
    mask_to_rle_pytorch,
    rle_to_mask,
)
from torchvision.ops.boxes import batched_nms

from sam2_ros.core.encoding import EncodedFrame, decoder_inputs
from sam2_ros.core.model import LoadedModel

UNKNOWN = "unknown"  # the label of what nobody named


@dataclass(frozen=True)
class EverythingSettings:
    """Meta's generator parameters (its defaults); crop layers are not supported."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0

    def check(self) -> None:
        """Refuse values Meta's generator would fail on, with a message that says which."""
        if not 1 <= self.points_per_side <= 256:
            raise ValueError(f"points_per_side must be 1..256, got {self.points_per_side}")
        if self.points_per_batch < 1:
            raise ValueError(f"points_per_batch must be at least 1, got {self.points_per_batch}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)}")
        if self.min_mask_region_area < 0:
            raise ValueError(f"min_mask_region_area must be >= 0, got {self.min_mask_region_area}")


@dataclass
class Proposal:
    """One mask the generator found (the node's ObjectResult: presence is not predicted, so 1)."""

    object_id: int
    mask: np.ndarray  # (H, W) bool
    score: float  # SAM 2's predicted IoU
    stability: float  # IoU of the mask thresholded at +offset and -offset
    box: tuple[float, float, float, float]  # x, y, width, height (Meta's XYWH)
    point: tuple[float, float]  # the grid point that prompted it
    label: str = UNKNOWN
    presence: float = 1.0


def without_small_regions(logits: torch.Tensor, threshold: float, max_area: int) -> torch.Tensor:
    """Fill the holes and remove the islands of at most `max_area` pixels of low-resolution mask logits (..., H, W).

    Meta's generator does this in its image predictor's `postprocess_masks` (`max_hole_area` and
    `max_sprinkle_area` set to `min_mask_region_area`, on the low-resolution masks before they are
    upsampled) with sam2's CUDA extension, and skips it where that is missing; here it is the same
    arithmetic with OpenCV's 8-connected components: both kinds of region are found on the masks
    as given, a hole becomes `threshold + 10`, an island `threshold - 10`.
    """
    original = logits.float()
    cleaned = original.clone()
    planes = zip(original.reshape(-1, *original.shape[-2:]), cleaned.reshape(-1, *original.shape[-2:]))
    for source, target in planes:
        for region, value in ((source <= threshold, threshold + 10.0), (source > threshold, threshold - 10.0)):
            count, labels, stats, _ = cv2.connectedComponentsWithStats(region.cpu().numpy().astype(np.uint8),
                                                                       connectivity=8)
            small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] <= max_area) + 1  # label 0: outside the region
            if small.size:
                target[torch.as_tensor(np.isin(labels, small), device=target.device)] = value
    return cleaned


def novel(proposals: list[Proposal], taken: list[np.ndarray], min_area: int, max_overlap: float,
          room: int) -> list[Proposal]:
    """Proposals no taken mask (tracked, or accepted just before) covers: best first, at most `room`.

    A proposal is covered when more than `max_overlap` of its pixels lie on one taken mask; one
    smaller than `min_area` pixels is left out.
    """
    taken, new = list(taken), []
    for proposal in proposals:  # Meta's order: best predicted IoU first
        area = np.count_nonzero(proposal.mask)
        if len(new) == room or area < max(min_area, 1):
            continue
        if any(other.shape == proposal.mask.shape and np.count_nonzero(proposal.mask & other) > max_overlap * area
               for other in taken):
            continue
        new.append(proposal)
        taken.append(proposal.mask)
    return new


class Everything:
    """Meta's generator bound to one model, run on frames that are already encoded."""

    def __init__(self, model: LoadedModel, settings: EverythingSettings = EverythingSettings(),
                 crop_n_layers: int = 0, decode_chunk: int | None = None):
        if crop_n_layers:
            raise ValueError(f"crop_n_layers {crop_n_layers}: crops re-encode every crop, which is what this "
                             "module avoids; use Meta's SAM2AutomaticMaskGenerator for them")
        settings.check()
        if decode_chunk is not None and decode_chunk < 1:
            raise ValueError(f"decode_chunk must be at least 1 point, got {decode_chunk}")
        self.model, self.settings, self.decode_chunk = model, settings, decode_chunk
        # Meta's generator, never run: its point grid, coordinate transforms and mask post-processing
        # (its small-region clean-up is ours, below: Meta's needs sam2's CUDA extension)
        self._generator = SAM2AutomaticMaskGenerator(model.sam, **{**asdict(settings), "min_mask_region_area": 0})

    def chunk(self) -> int:
        """Points per decoder call: the given number, else a whole batch on a GPU and a few on the CPU."""
        if self.decode_chunk is not None:
            return self.decode_chunk
        return self.model.per_call(self.settings.points_per_batch)

    def start(self, frame: EncodedFrame, limit: int | None = None) -> EverythingPass:
        """Begin a run over the frame, to be stepped a few point batches at a time.

        `limit`: keep only the best this many proposals (Meta's order), so the masks made at the
        end stay bounded whatever the thresholds let through.
        """
        return EverythingPass(self, frame, limit)

    def propose(self, frame: EncodedFrame) -> tuple[list[Proposal], float]:
        """Return every mask found on the frame in Meta's order (ids 1..N), and the time it took in ms."""
        run = self.start(frame)
        proposals = run.step(len(run.batches))
        return proposals, run.ms


class EverythingPass:
    """One run of the generator over one frame; each step decodes some point batches.

    The last step removes duplicates (box NMS over every batch's masks) and returns the proposals,
    so a caller can spread the decoder's work over several camera frames.
    """

    def __init__(self, everything: Everything, frame: EncodedFrame, limit: int | None = None):
        self._everything, self.frame, self._limit = everything, frame, limit
        height, width = frame.image_hw
        generator = everything._generator
        grid = generator.point_grids[0] * np.array([[width, height]])
        self.batches = [points for (points,) in batch_iterator(generator.points_per_batch, grid)]
        chunk = everything.chunk()
        self._chunks = [(index, points[first:first + chunk]) for index, points in enumerate(self.batches)
                        for first in range(0, len(points), chunk)]  # each call to SAM 2's decoder
        self._data, self._next, self.ms = MaskData(), 0, 0.0

    @property
    def remaining(self) -> int:
        """Point batches not yet decoded (a batch is decoded in chunks of a few points on the CPU)."""
        done = self._chunks[self._next][0] if self._next < len(self._chunks) else len(self.batches)
        return len(self.batches) - done

    def step(self, batches: int) -> list[Proposal] | None:
        """Decode up to `batches` more point batches; after the last one, the proposals (else None)."""
        last = len(self.batches) - self.remaining + batches
        return self._run(lambda index, _: index < last)

    def step_for(self, seconds: float) -> list[Proposal] | None:
        """Decode calls until `seconds` have passed (at least one call): a slice between camera frames."""
        deadline = time.perf_counter() + seconds
        return self._run(lambda _, calls: calls == 0 or time.perf_counter() < deadline)

    @torch.inference_mode()
    def _run(self, more) -> list[Proposal] | None:
        start = time.perf_counter()
        everything = self._everything
        image_embed, high_res = decoder_inputs(everything.model, self.frame)
        calls = 0
        with everything.model.autocast():
            while self._next < len(self._chunks) and more(self._chunks[self._next][0], calls):
                self._data.cat(self._decode(self._chunks[self._next][1], image_embed, high_res))
                self._next, calls = self._next + 1, calls + 1
        proposals = self._finish() if self._next == len(self._chunks) else None
        self.ms += (time.perf_counter() - start) * 1e3
        return proposals

    def _decode(self, points: np.ndarray, image_embed: torch.Tensor, high_res: list[torch.Tensor]) -> MaskData:
        """Decode some points: SAM 2's three masks per point, filtered as Meta's generator filters them."""
        everything = self._everything
        settings, sam = everything.settings, everything.model.sam
        generator = everything._generator
        transforms = generator.predictor._transforms
        height, width = self.frame.image_hw
        pixels = torch.as_tensor(points, dtype=torch.float32, device=everything.model.device)
        coords = transforms.transform_coords(pixels, normalize=True, orig_hw=(height, width))
        labels = torch.ones(len(coords), dtype=torch.int, device=coords.device)
        sparse, dense = sam.sam_prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
        low_res, iou, _, _ = sam.sam_mask_decoder(
            image_embeddings=image_embed, image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=generator.multimask_output, repeat_image=len(coords) > 1, high_res_features=high_res)
        per_point = low_res.shape[1]
        iou, low_res = iou.flatten(0, 1), low_res.flatten(0, 1)[:, None]
        keep = (iou > settings.pred_iou_thresh if settings.pred_iou_thresh > 0
                else torch.ones_like(iou, dtype=torch.bool))
        kept = low_res[keep]
        if settings.min_mask_region_area > 0:
            kept = without_small_regions(kept, generator.mask_threshold, settings.min_mask_region_area)
        logits = transforms.postprocess_masks(kept, (height, width))[:, 0]  # only the masks kept
        data = MaskData(masks=logits, iou_preds=iou[keep], points=pixels.repeat_interleave(per_point, dim=0)[keep])
        data["stability_score"] = calculate_stability_score(data["masks"], generator.mask_threshold,
                                                            settings.stability_score_offset)
        if settings.stability_score_thresh > 0:
            data.filter(data["stability_score"] >= settings.stability_score_thresh)
        data["masks"] = data["masks"] > generator.mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])  # one crop, the whole image: no crop edge to drop
        data["rles"] = mask_to_rle_pytorch(data["masks"])
        del data["masks"]
        return data

    def _finish(self) -> list[Proposal]:
        """Drop duplicates (box NMS by predicted IoU, as Meta's generator) and number what is left."""
        data = self._data
        if data["boxes"] is None or not len(data["boxes"]):
            return []
        keep = batched_nms(data["boxes"].float(), data["iou_preds"], torch.zeros_like(data["boxes"][:, 0]),
                           iou_threshold=self._everything.settings.box_nms_thresh)
        data.filter(keep[:self._limit])  # NMS keeps the best first
        data.to_numpy()
        return [Proposal(object_id=i + 1, mask=rle_to_mask(rle).astype(bool), score=float(data["iou_preds"][i]),
                         stability=float(data["stability_score"][i]),
                         box=tuple(float(v) for v in box_xyxy_to_xywh(data["boxes"][i]).tolist()),
                         point=tuple(float(v) for v in data["points"][i].tolist()))
                for i, rle in enumerate(data["rles"])]
