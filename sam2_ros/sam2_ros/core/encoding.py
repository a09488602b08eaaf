"""SAM 2's image encoder, run once per frame and shared by single-image segmentation and tracking."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torchvision.transforms.functional as TF

from sam2_ros.core.model import LoadedModel

_MEAN = [0.485, 0.456, 0.406]
_STD = [0.229, 0.224, 0.225]


@dataclass
class EncodedFrame:
    """One frame's image-encoder output, kept on the model's device."""

    image_hw: tuple[int, int]
    backbone: dict | None  # SAM2Base.forward_image output (batch of 1); None once kept for prompts only
    encode_ms: float
    _decoder_inputs: tuple | None = field(default=None, repr=False)


def to_model_input(image: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 1x3xSxS normalised float, as Meta's SAM2Transforms does.

    The uint8 image travels to the device first, so on a GPU the resize runs there.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    if not image.flags.writeable:  # e.g. a view of a ROS message buffer
        image = image.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    tensor = tensor.permute(2, 0, 1).contiguous().float().div(255)
    tensor = TF.resize(tensor, [size, size], antialias=True)
    return TF.normalize(tensor, _MEAN, _STD)[None]


@torch.inference_mode()
def encode(model: LoadedModel, image: np.ndarray) -> EncodedFrame:
    """Run the image encoder on one RGB frame."""
    start = time.perf_counter()
    with model.autocast():
        backbone = model.sam.forward_image(to_model_input(image, model.image_size, model.device))
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return EncodedFrame(image_hw=(int(image.shape[0]), int(image.shape[1])), backbone=backbone,
                        encode_ms=(time.perf_counter() - start) * 1e3)


def decoder_inputs(model: LoadedModel, frame: EncodedFrame) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Image embedding and high-res features for prompting a frame without memory.

    As in SAM 2 training on single images, `no_mem_embed` stands in for the memory.
    Computed once per frame and kept with it.
    """
    if frame._decoder_inputs is None:
        sam = model.sam
        _, vision_feats, _, feat_sizes = sam._prepare_backbone_features(frame.backbone)
        if sam.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + sam.no_mem_embed
        feats = [feat.permute(1, 2, 0).view(1, -1, *size)
                 for feat, size in zip(vision_feats, feat_sizes)]
        frame._decoder_inputs = (feats[-1], feats[:-1])
    return frame._decoder_inputs


def for_prompts(model: LoadedModel, frame: EncodedFrame) -> EncodedFrame:
    """Return the part of an encoding that prompting the frame later needs: the decoder inputs.

    Most of an encoding is the backbone's positional encodings (84 of 104 MB at input size
    1024), which only tracking that frame reads; a cache of recent frames keeps this instead.
    """
    return EncodedFrame(frame.image_hw, None, frame.encode_ms, decoder_inputs(model, frame))
