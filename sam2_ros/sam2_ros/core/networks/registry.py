"""The model families the node runs, by name: the one place that knows which families exist.

Two kinds: trackers (SAM 2 and its relatives, `Family`) and the open-vocabulary detectors that turn
a text prompt into boxes (`DetectorFamily`), each listed the same way.

A family module declares a `FAMILY` (its model names with their native input sizes, how to
build a network for a name and input size, how to recognise its checkpoint's weights) and is
listed in `BUILT_IN`; `model.py` loads and checks every checkpoint through `family_of` and
`recognise`, naming no family itself. A family can also be registered at run time (a plug-in,
a test's toy family). Built-in families are imported on first use, so an optional dependency
(timm for EdgeTAM) is imported only when its family builds a network.
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from sam2_ros.core.hub import Published

# A new family: one module in this package with a FAMILY (a DETECTOR), and its name here.
BUILT_IN = ("meta_sam2", "edgetam", "efficienttam")
BUILT_IN_DETECTORS = ("grounding_dino", "owlv2", "sam3")
DEFAULT_MODEL = "sam2.1_hiera_tiny"  # what the node and the tools run when no model is named
DEFAULT_DETECTOR = "grounding_dino_tiny"  # what text prompts run when no detector is named

StateDict = Mapping[str, torch.Tensor]


def default_hint(guess: str) -> str:
    return f"It looks like a '{guess}' checkpoint: set `model: {guess}`"


@dataclass(frozen=True)
class Family:
    """What the loader needs to know of one model family."""

    title: str  # how messages name it: "SAM 2", "EdgeTAM"
    models: Mapping[str, int]  # model name -> the input size it was trained at
    build: Callable[[str, int], nn.Module]  # (name, image_size) -> the network, randomly initialised, on the CPU
    recognise: Callable[[StateDict], str | None]  # the model a state dict's weights are of; None: not this family's
    published: str = ""  # where its checkpoints are published, for the message a missing checkpoint gets
    hub: Mapping[str, Published] = field(default_factory=dict)  # model -> its checkpoint, fetched by `auto`
    hint: Callable[[str], str] = default_hint  # what to tell a user whose weights `recognise` named
    deploy: Callable[[nn.Module], object] = lambda network: None  # rearranged for inference once loaded
    benchmarked: tuple[tuple[str, int], ...] = ()  # (model, input size) that `sam2_bench --suite models` times
    bf16_benchmarked: tuple[tuple[str, int], ...] = field(default=())  # and with bfloat16 beside float32


_lock = threading.Lock()
# One network is built at a time, whatever its family: transformers 4 (Humble's) builds a model
# with nn.Module.register_parameter patched process-wide to make meta tensors, so a SAM 2 network
# built on another thread meanwhile (a node configuring while a detector loads) would be empty.
BUILDING = threading.Lock()
_families: list[Family] = []
_loaded = False


def _built_in() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        _families[:0] = [importlib.import_module(f"{__package__}.{name}").FAMILY for name in BUILT_IN]
        _loaded = True


def families() -> tuple[Family, ...]:
    """Every family, built-in ones first."""
    _built_in()
    with _lock:
        return tuple(_families)


def register(family: Family) -> None:
    """Add a family; its model names must be new."""
    taken = set(model_names()) & set(family.models)
    if taken:
        raise ValueError(f"model names already registered: {', '.join(sorted(taken))}")
    with _lock:
        _families.append(family)


def unregister(family: Family) -> None:
    with _lock:
        _families.remove(family)


def model_names() -> tuple[str, ...]:
    """Every model name of every family, sorted."""
    return tuple(sorted(name for family in families() for name in family.models))


def family_of(name: str) -> Family:
    """Return the family of a model name; an unknown name is refused with the known ones."""
    for family in families():
        if name in family.models:
            return family
    raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(model_names())}")


def recognise(state: StateDict) -> tuple[Family, str] | None:
    """Return the family and model a checkpoint's weights belong to, or None when no family knows them."""
    for family in families():
        name = family.recognise(state)
        if name is not None:
            return family, name
    return None


def zero_shot_detector(folder) -> tuple[nn.Module, object]:
    """Load a saved `transformers` zero-shot object detector and its processor (a family's default loader)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    return AutoModelForZeroShotObjectDetection.from_pretrained(folder), AutoProcessor.from_pretrained(folder)


@dataclass(frozen=True)
class DetectorFamily:
    """What the text prompts need to know of one open-vocabulary detector family (a `transformers` model).

    `prepare` and `found` are the family's own pre- and post-processing, so that boxes are the
    ones its processor gives; `prepare` returns the model's inputs, `found` a list of
    (box x0 y0 x1 y1 in image pixels, score, phrase index), best first.
    """

    title: str  # "Grounding DINO"
    model_type: str  # the `model_type` of its transformers config.json, which names a saved model's family
    models: Mapping[str, Published]  # detector name -> its Hugging Face repository
    prepare: Callable  # (processor, rgb, phrases, size or None: the processor's own) -> the model's keyword inputs
    found: Callable  # (processor, outputs, inputs, phrases, image_hw, box_threshold, text_threshold) -> boxes
    load: Callable[..., tuple[nn.Module, object]] = zero_shot_detector  # folder -> (network, processor)
    resizable: bool = True  # whether it runs at input sizes other than its own (text_image_size)


_detectors: list[DetectorFamily] = []


def detector_families() -> tuple[DetectorFamily, ...]:
    with _lock:
        if not _detectors:
            _detectors.extend(importlib.import_module(f"{__package__}.{name}").DETECTOR
                              for name in BUILT_IN_DETECTORS)
        return tuple(_detectors)


def detector_names() -> tuple[str, ...]:
    return tuple(sorted(name for family in detector_families() for name in family.models))


def detector_of(name: str) -> DetectorFamily:
    """Return the family of a detector name or of a saved model's `model_type`; refuse others with the known ones."""
    for family in detector_families():
        if name in family.models or name == family.model_type:
            return family
    raise ValueError(f"unknown text detector '{name}'; choose one of: {', '.join(detector_names())}, "
                     "or a folder a transformers detector of one of these families was saved to")
