"""Meta's SAM2VideoPredictor driven as a live stream would drive it: the reference we match.

Each frame is propagated on its own, then that frame's prompts are added, so no prompt can
reach back to earlier frames. The predictor reads the same input tensors as our tracker.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from sam2.build_sam import build_sam2_video_predictor

from sam2_ros.core.encoding import to_model_input
from sam2_ros.core.networks.meta_sam2 import config_for
from sam2_ros.core.prompts import Prompt


class MetaLiveStream:
    """Meta's video predictor over a known list of frames, stepped one frame at a time."""

    def __init__(self, checkpoint: str, images: list[np.ndarray], image_size: int,
                 model: str = "sam2.1_hiera_tiny", device: str = "cpu", vos_optimized: bool = False):
        """`vos_optimized`: Meta's SAM2VideoPredictorVOS (every component compiled; CUDA), as Meta times it."""
        self.predictor = build_sam2_video_predictor(
            config_for(model), ckpt_path=checkpoint, device=device, vos_optimized=vos_optimized,
            hydra_overrides_extra=[f"++model.image_size={image_size}",
                                   # a correction makes a conditioning frame, as in our tracker
                                   "++model.add_all_frames_to_correct_as_cond=true"])
        with tempfile.TemporaryDirectory() as folder:  # init_state only reads JPEG folders
            for t, image in enumerate(images):
                cv2.imwrite(str(Path(folder) / f"{t:05d}.jpg"), image[..., ::-1])
            self.state = self.predictor.init_state(folder)
        self.state["images"] = torch.cat(
            [to_model_input(image, image_size, torch.device(device)) for image in images])
        self.state["cached_features"] = {}  # init_state encoded frame 0 from the JPEG

    def track(self, t: int) -> dict[int, np.ndarray]:
        """Propagate to frame t alone; object id -> mask."""
        if not self.state["obj_ids"]:
            return {}
        masks = {}
        for _, ids, logits in self.predictor.propagate_in_video(self.state, start_frame_idx=t,
                                                                max_frame_num_to_track=0):
            masks = _masks(ids, logits)
        return masks

    def add_prompt(self, t: int, prompt: Prompt) -> dict[int, np.ndarray]:
        """Add points and/or a box, or a binary mask, for an object on frame t; every object's mask on t."""
        if prompt.mask is not None:
            _, ids, logits = self.predictor.add_new_mask(self.state, t, prompt.object_id, prompt.mask)
            return _masks(ids, logits)
        has_points = len(prompt.points) > 0
        _, ids, logits = self.predictor.add_new_points_or_box(
            self.state, t, prompt.object_id, points=prompt.points if has_points else None,
            labels=prompt.point_labels if has_points else None, box=prompt.box)
        return _masks(ids, logits)

    def remove(self, object_id: int) -> None:
        self.predictor.remove_object(self.state, object_id)


def _masks(ids, logits: torch.Tensor) -> dict[int, np.ndarray]:
    return {object_id: (logits[k, 0] > 0).cpu().numpy() for k, object_id in enumerate(ids)}
