"""Grounding DINO (Liu et al., ECCV 2024) through `transformers`: boxes for phrases, with its own processing.

Its text is the phrases joined, each ended by ".", as the model was trained; each kept box is
given the phrase whose tokens it scores highest (its processor names boxes by the tokens above
text_threshold, which can span phrases or be none).
"""
from __future__ import annotations

import torch

from sam2_ros.core.hub import Published
from sam2_ros.core.networks.registry import DetectorFamily

LONGEST_OVER_SHORTEST = 1333 / 800  # its processor's size rule: shortest side 800, longest at most 1333


def text_of(phrases: tuple[str, ...]) -> tuple[str, list[tuple[int, int]]]:
    """Return the model's text and each phrase's character span in it."""
    text, spans = "", []
    for phrase in phrases:
        spans.append((len(text), len(text) + len(phrase)))
        text += f"{phrase}. "
    return text.rstrip(), spans


def prepare(processor, rgb, phrases: tuple[str, ...], size: int | None) -> dict:
    text, _ = text_of(phrases)
    resize = {} if size is None else {"size": {"shortest_edge": size,
                                               "longest_edge": round(size * LONGEST_OVER_SHORTEST)}}
    return processor(images=rgb, text=text, return_tensors="pt", **resize)


def token_phrases(processor, phrases: tuple[str, ...]) -> list[int]:
    """Return the phrase index of each text token (-1: a separator or special token)."""
    text, spans = text_of(phrases)
    offsets = processor.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return [next((i for i, (a, b) in enumerate(spans) if start < end and a <= start and end <= b), -1)
            for start, end in offsets]


def found(processor, outputs, inputs, phrases, image_hw, box_threshold: float, text_threshold: float) -> list:
    result = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=box_threshold, text_threshold=text_threshold,
        target_sizes=[tuple(image_hw)])[0]
    probs = outputs.logits[0].sigmoid()
    kept = probs.max(-1).values > box_threshold  # the queries the processor kept, in the same order
    owners = token_phrases(processor, phrases)
    per_phrase = [probs[:, [t for t, owner in enumerate(owners) if owner == i]].amax(-1) for i in range(len(phrases))]
    phrase_of = torch.stack(per_phrase, -1).argmax(-1)[kept]
    boxes = [(box.tolist(), float(score), int(phrase))
             for box, score, phrase in zip(result["boxes"], result["scores"], phrase_of)]
    return sorted(boxes, key=lambda b: -b[1])


DETECTOR = DetectorFamily(
    title="Grounding DINO", model_type="grounding-dino", prepare=prepare, found=found,
    models={"grounding_dino_tiny": Published("IDEA-Research/grounding-dino-tiny", ""),
            "grounding_dino_base": Published("IDEA-Research/grounding-dino-base", "")})
