"""The model families the node runs, by name: the one place that knows which families exist.

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

# A new family: one module in this package with a FAMILY, and its name here.
BUILT_IN = ("meta_sam2", "edgetam", "efficienttam")
DEFAULT_MODEL = "sam2.1_hiera_tiny"  # what the node and the tools run when no model is named

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
