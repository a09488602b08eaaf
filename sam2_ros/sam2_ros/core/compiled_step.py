"""A per-frame tracking step that compiles once: fixed memory slots and a few fixed object-group sizes.

`torch.compile` compiles a graph per input shape. SAM 2's step has two shapes that change while
tracking: the memory (frames and object pointers pile up over an object's first 16 frames, and
with each correction) and the batch (objects stepped together). Here the memory is padded to a
few fixed sizes with its padding masked out (`MemorySlots`), and a group of objects is padded to
the next of a few sizes by repeating its last object (its outputs are dropped). The shapes a
stream can take are compiled while the model loads, by tracking a short synthetic clip with
every group size, so no camera frame waits for a compiler.

Compiled parts run only on camera frames (`active()`): prompts (a different number of points
each time), segment everything and the image mode run eagerly, as they have no fixed shape.
The eager path is untouched: it stays exactly Meta's.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils._pytree import tree_map

from sam2_ros.core.networks.memory_attention import MemorySlots

# CUDA graphs on a GPU (what makes a step cheap there: one launch for hundreds of kernels); their
# outputs live in buffers the next replay overwrites, so copies are handed out.
MODES = {"cuda": "reduce-overhead", "cpu": None}
# Each shape is a graph of the same function; dynamo keeps 8 per function by default and runs any
# further shape eagerly. Group sizes up to 16 with two memory sizes are 10 shapes.
SHAPES_PER_FUNCTION = 64


def compiled(function: Callable, mode: str | None, copy_outputs: bool = False) -> Callable:
    """torch.compile `function` with fixed shapes, keeping a graph for every shape it is called with.

    `copy_outputs`: hand out copies (CUDA graphs overwrite their outputs on the next replay).
    """
    graph = torch.compile(function, dynamic=False, mode=mode)

    def run(*args, **kwargs):
        with torch._dynamo.config.patch(recompile_limit=SHAPES_PER_FUNCTION):  # only while it compiles or runs
            out = graph(*args, **kwargs)
        return tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, out) if copy_outputs else out
    return run


def group_sizes(largest: int) -> tuple[int, ...]:
    """Powers of two below `largest`, then `largest`: the batch sizes objects are stepped in."""
    sizes, size = [], 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return (*sizes, largest)


class Switch:
    """A module's forward, compiled while a tracker steps camera frames and eager otherwise."""

    def __init__(self, eager: Callable, compiled: Callable):
        self.eager, self.compiled, self.on = eager, compiled, False

    def __call__(self, *args, **kwargs):
        return (self.compiled if self.on else self.eager)(*args, **kwargs)


@dataclass
class CompiledStep:
    """The compiled parts of a model's tracking step and the shapes they are compiled for."""

    switches: list[Switch]
    slots: MemorySlots | None  # None: the memory attention runs eagerly (its attention cannot be padded)
    sizes: tuple[int, ...] = ()
    max_cond_frames: int = 0
    warmed: list[tuple[int, int]] = field(default_factory=list)  # (objects, max_cond_frames) tracked while loading

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Compiled parts on, for one camera frame's steps."""
        parts = [*self.switches, *([self.slots] if self.slots is not None else [])]
        for part in parts:
            part.on = True
        try:
            yield
        finally:
            for part in parts:
                part.on = False

    def group_size(self, objects: int) -> int:
        """Return the compiled batch size a group of `objects` is padded to (itself past the largest)."""
        return next((size for size in self.sizes if size >= objects), objects)


def step_for(model, largest_group: int, max_cond_frames: int) -> CompiledStep | None:
    """Return the compiled step of a `LoadedModel` loaded with `compile`, for trackers with these limits.

    Compiled once per model; every shape those limits allow is compiled before this returns.
    A model on exported graphs has its step already; None when the model runs eagerly.
    """
    if model.exported is not None:  # exported graphs: any group size, memory as the export padded it
        model.exported.check(model.spec, max_cond_frames)
        return model.exported
    if not model.spec.compile:
        return None
    if model.compiled is None:
        model.compiled = _compile(model)
    step = model.compiled
    sizes = group_sizes(largest_group)
    if (step.sizes, step.max_cond_frames) != (sizes, max_cond_frames):
        step.sizes, step.max_cond_frames = sizes, max_cond_frames
        if step.slots is not None:
            _fit_slots(model.sam, step.slots, max_cond_frames)
        _warm_up(model, step)
    return step


def _compile(model) -> CompiledStep:
    """Wrap the step's modules in switches and compile the padded memory attention (graphs come on first use)."""
    sam, device = model.sam, model.device.type
    mode, copy_outputs = MODES.get(device), device == "cuda"
    switches = []
    for module in (sam.sam_prompt_encoder, sam.sam_mask_decoder, sam.memory_encoder,
                   getattr(sam, "spatial_perceiver", None)):
        if module is not None:
            switch = Switch(module.forward, compiled(module.forward, mode, copy_outputs))
            module.forward = switch
            switches.append(switch)
    attention = sam.memory_attention
    slots = None
    if all(getattr(layer.cross_attn_image, "fixed_slots", True) for layer in attention.layers):
        frame_tokens = getattr(attention.layers[0].cross_attn_image, "frame_tokens", sam.sam_image_embedding_size ** 2)
        slots = MemorySlots(frame_tokens=frame_tokens, frame_buckets=(), pointer_tokens=0,
                            layers=compiled(attention.masked_layers, mode, copy_outputs))
        attention.slots = slots
    return CompiledStep(switches, slots)


def _fit_slots(sam, slots: MemorySlots, max_cond_frames: int) -> None:
    """Memory sizes for objects with up to `max_cond_frames` prompted frames.

    A step attends to every prompted frame and the last num_maskmem - 1 tracked ones: padded to
    num_maskmem frames (one prompt, the usual case) or to the most there can be; object pointers
    (C / mem_dim tokens each) to those of every prompted frame and the last 15 frames.
    """
    per_pointer = sam.hidden_dim // sam.mem_dim if sam.mem_dim < sam.hidden_dim else 1
    slots.frame_buckets = tuple(sorted({sam.num_maskmem, max_cond_frames + sam.num_maskmem - 1}))
    slots.pointer_tokens = (max_cond_frames + sam.max_obj_ptrs_in_encoder - 1) * per_pointer


def _warm_up(model, step: CompiledStep) -> None:
    """Track a short synthetic clip with every group size, so that every shape is compiled now.

    Objects are prompted on the first frame and corrected on each next one until they have
    `max_cond_frames` prompted frames, then tracked until the memory is as large as it gets.
    """
    from sam2_ros.core.prompts import Prompt
    from sam2_ros.core.tracker import StreamingTracker

    size, cond = model.image_size, step.max_cond_frames
    image = (np.indices((size, size)).sum(axis=0) % 64 * 4).astype(np.uint8)[..., None].repeat(3, axis=2)
    for objects in step.sizes:
        tracker = StreamingTracker(model, max_objects=objects, max_cond_frames=cond, step=step)
        for t in range(cond + model.sam.num_maskmem):
            tracker.track(image)
            for k in range(objects if t < cond else 0):  # the first prompt, then corrections
                corner = 4.0 * k
                box = np.array([corner, corner, size / 2 + corner, size / 2 + corner], np.float32)
                tracker.add_prompt(Prompt(object_id=k + 1, box=box if t == 0 else None,
                                          points=np.array([[corner + 8.0 + t, corner + 8.0]], np.float32),
                                          point_labels=np.array([1])))
        step.warmed.append((objects, cond))
