"""SAM 3 (Meta, 2025) through `transformers`: its detector's boxes for phrases, with its own post-processing.

Its weights are gated: accept the licence at https://huggingface.co/facebook/sam3, log in
(`hf auth login`), then `sam2_fetch sam3`. SAM 3 reads one phrase per image, so the image is
batched once per phrase and each box is named by the phrase it was found for. Only its boxes are
used: SAM 2's memory tracks what it finds, as with the other detectors.
"""
from __future__ import annotations

from sam2_ros.core.hub import Published
from sam2_ros.core.networks.registry import DetectorFamily


def load(folder) -> tuple:
    from transformers import Sam3Model, Sam3Processor

    return Sam3Model.from_pretrained(folder), Sam3Processor.from_pretrained(folder)


def prepare(processor, rgb, phrases: tuple[str, ...], size: int | None) -> dict:
    resize = {} if size is None else {"size": {"height": size, "width": size}}
    return processor(images=[rgb] * len(phrases), text=list(phrases), return_tensors="pt", **resize)


def found(processor, outputs, inputs, phrases, image_hw, box_threshold: float, text_threshold: float) -> list:
    """SAM 3 scores each phrase's boxes on its own: text_threshold has no part in it."""
    results = processor.post_process_object_detection(outputs, threshold=box_threshold,
                                                      target_sizes=[tuple(image_hw)] * len(phrases))
    boxes = [(box.tolist(), float(score), index) for index, result in enumerate(results)
             for box, score in zip(result["boxes"], result["scores"])]
    return sorted(boxes, key=lambda b: -b[1])


DETECTOR = DetectorFamily(title="SAM 3", model_type="sam3", prepare=prepare, found=found, load=load,
                          resizable=False,  # its rotary position encodings are built for its own size
                          models={"sam3": Published("facebook/sam3", "")})
