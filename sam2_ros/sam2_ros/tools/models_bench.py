"""sam2_bench --suite models: which model, at which input size, this machine can track with.

SAM 2.1 tiny at three input sizes beside EdgeTAM and EfficientTAM at their native sizes, in one run, on random
weights (speed does not depend on them): image encoder time, time per frame with 1 and 4
objects once the memory is full, memory growth per frame, and bfloat16 beside float32.
"""
from __future__ import annotations

import dataclasses
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from sam2_ros.core.encoding import encode
from sam2_ros.core.model import LoadedModel, ModelSpec, load_model, this_cpu_bf16_flags, write_random_checkpoint
from sam2_ros.core.networks import registry
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.tools.measure import camera_frame, eight_boxes, median_ms, rss_mb, slope

# What each family asks to be timed (registry.Family.benchmarked), and with bfloat16 beside float32
# where the CPU has bfloat16 instructions; where it has not, only the first of those (emulation
# takes 9x to 20x float32's time: the reason the node refuses it there).
CONFIGS = tuple(config for family in registry.families() for config in family.benchmarked)
BF16_CONFIGS = tuple(config for family in registry.families() for config in family.bf16_benchmarked)
EMULATED_BF16 = BF16_CONFIGS[0]
OBJECTS = (1, 4)
FULL_MEMORY = 8  # frames after which SAM 2's memory (7 frames) is full and a frame costs what every later one does


def key(name: str, size: int) -> str:
    return f"{name}_{size}"


def track_run(model: LoadedModel, frames: list[np.ndarray], prompts: list, sync: Callable[[], None],
              rss: Callable[[], float], label: str) -> tuple[float, float, list[np.ndarray]]:
    """Track `frames`, with `prompts` given on the first.

    Returns the median ms per frame once the memory is full, the memory growth (MB) per frame
    over those frames, and the first object's masks.
    """
    tracker = StreamingTracker(model, max_objects=len(prompts))
    times, sizes, masks = [], [], []
    for t, image in enumerate(tqdm(frames, desc=label, leave=False)):
        start = time.perf_counter()
        result = tracker.track(image)
        if t == 0:
            for prompt in prompts:
                _, result = tracker.add_prompt(prompt)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
        sizes.append(rss())
        masks.append(result.objects[0].mask)
    return statistics.median(times[FULL_MEMORY:]), slope(sizes[FULL_MEMORY:]), masks


def bench_models(device: str, frames: int, repeats: int, sync: Callable[[], None]) -> dict:
    """Every configuration in turn, float32; bfloat16 beside it for BF16_CONFIGS."""
    if frames <= FULL_MEMORY:
        raise ValueError(f"--model-frames must be over {FULL_MEMORY} (the memory fills first), got {frames}")
    image = camera_frame()
    clip = [np.roll(image, 4 * t, axis=1) for t in range(frames)]  # a slow pan
    boxes = eight_boxes(image.shape[1], image.shape[0])
    flags = this_cpu_bf16_flags()
    results: dict = {"models_frames": frames, "models_cpu_bf16_instructions": " ".join(flags) or "none"}
    with tempfile.TemporaryDirectory() as scratch:
        for name, size in CONFIGS:
            checkpoint = write_random_checkpoint(Path(scratch) / f"{name}.pt", name)
            model = load_model(ModelSpec(name=name, checkpoint=str(checkpoint), device=device, image_size=size))
            k = key(name, size)
            results[f"models_encoder_ms_{k}"] = median_ms(lambda m=model: encode(m, image), repeats, sync)
            masks = {}
            for count in OBJECTS:
                ms, growth, masks[count] = track_run(model, clip, boxes[:count], sync, rss_mb, f"{k} {count} obj")
                results[f"models_track_ms_{count}obj_{k}"] = ms
                results[f"models_ram_mb_per_frame_{count}obj_{k}"] = growth
            bf16 = (name, size) in BF16_CONFIGS if flags else (name, size) == EMULATED_BF16
            if model.device.type == "cpu" and bf16:
                results.update(bf16_beside(model, k, image, clip, boxes, masks[1], repeats, sync, bool(flags)))
            del model
            gc.collect()
    for count in OBJECTS:
        results[f"models_edgetam_fps_over_tiny_{count}obj_1024"] = (
            results[f"models_track_ms_{count}obj_sam2.1_hiera_tiny_1024"]
            / results[f"models_track_ms_{count}obj_edgetam_1024"])
    return results


def bf16_beside(model: LoadedModel, k: str, image: np.ndarray, clip: list[np.ndarray], boxes: list,
                exact: list[np.ndarray], repeats: int, sync: Callable[[], None], native: bool) -> dict:
    """bfloat16 autocast on the same network: its times and the share of mask pixels agreeing with float32.

    Measured on any CPU; `native` says whether this one has bfloat16 instructions (the node
    refuses bfloat16 where it has not: there PyTorch emulates it).
    """
    mixed = LoadedModel(sam=model.sam, spec=dataclasses.replace(model.spec, precision="bfloat16"),
                        device=model.device)
    ms, _, masks = track_run(mixed, clip, boxes[:1], sync, rss_mb, f"{k} bfloat16")
    agree = float(np.mean([np.mean(a == b) for a, b in zip(exact, masks)]))
    return {f"models_bf16_native_{k}": native,
            f"models_bf16_encoder_ms_{k}": median_ms(lambda: encode(mixed, image), repeats, sync),
            f"models_bf16_track_ms_1obj_{k}": ms,
            f"models_bf16_mask_pixels_agreeing_{k}": agree}
