"""Text prompts: phrases checked, an open-vocabulary detector loaded by name, its boxes found in slices.

The detector is a `transformers` model of a registered `DetectorFamily` (Grounding DINO, OWLv2),
named (`grounding_dino_tiny`, fetched once into the Hugging Face cache) or given as the folder a
saved one lives in. It only proposes boxes; the tracking session decides which become objects.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sam2_ros.core import hub
from sam2_ros.core.model import resolve_device
from sam2_ros.core.networks.registry import BUILDING, DEFAULT_DETECTOR, DetectorFamily, detector_of
from sam2_ros.core.sliced import SlicedCall

MAX_TEXT_CHARS = 1000  # Grounding DINO reads 256 tokens at most; a longer text is a mistake, not a prompt
MAX_PHRASES = 16
SEPARATOR = "."  # "cup . red ball": two phrases, as Grounding DINO's own prompts are written


class TextError(ValueError):
    """A text prompt that cannot be used; the message says why."""


def phrases_of(text: str) -> tuple[str, ...]:
    """Split a text prompt into its phrases (whitespace tidied, repeats dropped); refuse what is no prompt."""
    if "\ufffd" in text:  # rclpy replaces bytes that are not UTF-8 by U+FFFD
        raise TextError("text prompt is not valid UTF-8 (undecodable bytes were replaced): send UTF-8 text")
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(f"text prompt of {len(text)} characters is over the limit of {MAX_TEXT_CHARS}")
    if any(not c.isprintable() and not c.isspace() for c in text):
        raise TextError("text prompt holds control characters: give plain phrases such as 'cup . red ball'")
    phrases = tuple(dict.fromkeys(" ".join(p.split()) for p in text.split(SEPARATOR) if p.strip()))
    if not phrases:
        raise TextError("text prompt is empty: give phrases such as 'cup' or 'cup . red ball'")
    if len(phrases) > MAX_PHRASES:
        raise TextError(f"text prompt has {len(phrases)} phrases, over the limit of {MAX_PHRASES}")
    return phrases


@dataclass(frozen=True)
class Found:
    """One box the detector gives for a phrase, in pixels of the image it ran on."""

    box: np.ndarray  # (4,) x_min, y_min, x_max, y_max
    score: float
    phrase: str


@dataclass(frozen=True)
class DetectorSpec:
    """Which detector to run and where."""

    name: str = DEFAULT_DETECTOR  # a registered name, or the folder a transformers detector was saved to
    device: str = "auto"
    image_size: int = 0  # its input size (shortest side, or the square's side); 0: its processor's own


class TextDetector:
    """A loaded detector with its processor: boxes for phrases on an RGB image."""

    def __init__(self, family: DetectorFamily, network: torch.nn.Module, processor, device: torch.device,
                 image_size: int | None, name: str):
        self.family, self.network, self.processor, self.device = family, network, processor, device
        self.image_size, self.name = image_size, name  # image_size None: the processor's own

    @property
    def input_size(self) -> int:
        """The side it resizes images to: shortest side (Grounding DINO) or the square's (OWLv2, SAM 3)."""
        own = self.processor.image_processor.size
        return self.image_size or own.get("shortest_edge") or own["height"]

    def detect(self, rgb: np.ndarray, phrases: tuple[str, ...], box_threshold: float,
               text_threshold: float) -> list[Found]:
        """Boxes for the phrases, best first, as the family's own post-processing gives them."""
        inputs = self.family.prepare(self.processor, rgb, phrases, self.image_size).to(self.device)
        outputs = self.network(**inputs)
        return [Found(np.asarray(box, np.float32), score, phrases[index])
                for box, score, index in self.family.found(self.processor, outputs, inputs, phrases, rgb.shape[:2],
                                                           box_threshold, text_threshold)]

    def start(self, rgb: np.ndarray, phrases: tuple[str, ...], box_threshold: float,
              text_threshold: float) -> SlicedCall:
        """Start the same detection as a pass that computes only while stepped (`SlicedCall.step`)."""
        return SlicedCall(lambda: self.detect(rgb, phrases, box_threshold, text_threshold), name="text_detector")


def detector_folder(name: str) -> tuple[DetectorFamily, Path]:
    """Return the family and the local folder of a detector: a saved model's, or a named one's in the cache."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        try:
            model_type = json.loads(config.read_text())["model_type"]
        except (OSError, ValueError, KeyError, TypeError):
            raise TextError(f"'{folder}' holds no transformers detector: no readable config.json with a "
                            "model_type") from None
        return detector_of(model_type), folder
    family = detector_of(name)
    try:
        return family, hub.fetch(family.models[name], name)
    except hub.FetchError as error:
        raise TextError(f"text detector: {error}") from None


def load_detector(spec: DetectorSpec) -> TextDetector:
    """Load a detector (fetched first when named and not cached) on its device, in inference mode."""
    family, folder = detector_folder(spec.name)
    if spec.image_size and not family.resizable:
        raise TextError(f"{family.title} runs at its own input size only: set text_image_size to 0")
    device = resolve_device(spec.device)
    try:
        with BUILDING:
            network, processor = family.load(folder)
        network = network.eval().to(device)
    except (OSError, ValueError) as error:
        raise TextError(f"'{folder}' is not a loadable {family.title} detector: "
                        f"{str(error).splitlines()[0]}. Fetch it again (sam2_fetch {spec.name})") from None
    return TextDetector(family, network, processor, device, spec.image_size or None, spec.name)
