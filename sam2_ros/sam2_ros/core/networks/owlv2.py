"""OWLv2 (Minderer et al., NeurIPS 2023) through `transformers`: boxes for phrases, with its own processing.

Each phrase is a query of its own; the image is padded to a square and resized to `size`.
"""
from __future__ import annotations

from sam2_ros.core.hub import Published
from sam2_ros.core.networks.registry import DetectorFamily


def prepare(processor, rgb, phrases: tuple[str, ...], size: int | None) -> dict:
    if size is None:
        return processor(text=[list(phrases)], images=rgb, return_tensors="pt")
    inputs = processor(text=[list(phrases)], images=rgb, size={"height": size, "width": size}, return_tensors="pt")
    inputs["interpolate_pos_encoding"] = True  # its position embeddings were learnt at its own size
    return inputs


def found(processor, outputs, inputs, phrases, image_hw, box_threshold: float, text_threshold: float) -> list:
    """OWLv2 scores a box per phrase already: text_threshold has no part in it."""
    result = processor.post_process_grounded_object_detection(
        outputs, threshold=box_threshold, target_sizes=[tuple(image_hw)])[0]
    boxes = [(box.tolist(), float(score), int(label))
             for box, score, label in zip(result["boxes"], result["scores"], result["labels"])]
    return sorted(boxes, key=lambda b: -b[1])


DETECTOR = DetectorFamily(
    title="OWLv2", model_type="owlv2", prepare=prepare, found=found,
    models={"owlv2_base": Published("google/owlv2-base-patch16-ensemble", ""),
            "owlv2_large": Published("google/owlv2-large-patch14-ensemble", "")})
