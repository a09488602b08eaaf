"""sam2_bench --suite compiled: the compiled tracking step beside the eager one, in one run.

SAM 2.1 tiny at 512 and EdgeTAM at 1024 (random weights: speed does not depend on them), 1 and
4 objects, once the memory is full. The compiled model compiles every shape its tracker can
take while it loads (timed apart); the masks of the first object are compared frame by frame.
Beside tiny, Meta's VOS-optimised predictor (every component compiled, as Meta times it on a GPU)
tracks the same clip and boxes live: what the issue compares on a GPU, measured on this device.
"""
from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from sam2_ros.core.model import ModelSpec, load_model, write_random_checkpoint
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.tools.measure import camera_frame, eight_boxes, rss_mb
from sam2_ros.tools.meta_live import MetaLiveStream
from sam2_ros.tools.models_bench import FULL_MEMORY, key, track_run

CONFIGS = (("sam2.1_hiera_tiny", 512), ("edgetam", 1024))
OBJECTS = (1, 4)
META_VOS = ("sam2.1_hiera_tiny",)  # Meta's VOS predictor builds SAM 2's own models only


def bench_compiled(device: str, frames: int, sync: Callable[[], None]) -> dict:
    """compiled_track_ms_<n>obj_<model>_<size> beside eager_track_ms_<n>obj_<model>_<size>, and their agreement."""
    if frames <= FULL_MEMORY:
        raise ValueError(f"--model-frames must be over {FULL_MEMORY} (the memory fills first), got {frames}")
    image = camera_frame()
    clip = [np.roll(image, 4 * t, axis=1) for t in range(frames)]
    boxes = eight_boxes(image.shape[1], image.shape[0])
    results: dict = {"compiled_frames": frames}
    with tempfile.TemporaryDirectory() as scratch:
        for name, size in CONFIGS:
            checkpoint = str(write_random_checkpoint(Path(scratch) / f"{name}.pt", name))
            k = key(name, size)
            masks = {}
            for compiled in (False, True):
                who = "compiled" if compiled else "eager"
                start = time.perf_counter()
                model = load_model(ModelSpec(name=name, checkpoint=checkpoint, device=device, image_size=size,
                                             compile=compiled))
                StreamingTracker(model, max_objects=max(OBJECTS))  # compiles every shape of such trackers
                results[f"{who}_load_s_{k}"] = time.perf_counter() - start
                for count in OBJECTS:
                    ms, _, masks[who, count] = track_run(model, clip, boxes[:count], sync, rss_mb, f"{who} {k} {count}")
                    results[f"{who}_track_ms_{count}obj_{k}"] = ms
                del model
                gc.collect()
            if name in META_VOS:
                for count in OBJECTS:
                    ms, warm_up_s, masks["meta_vos", count] = meta_vos_run(
                        checkpoint, name, size, device, clip, boxes[:count], sync, f"meta vos {k} {count}")
                    results[f"meta_vos_track_ms_{count}obj_{k}"] = ms
                    results[f"meta_vos_warm_up_s_{count}obj_{k}"] = warm_up_s
            for count in OBJECTS:
                results[f"compiled_over_eager_{count}obj_{k}"] = (results[f"compiled_track_ms_{count}obj_{k}"]
                                                                  / results[f"eager_track_ms_{count}obj_{k}"])
                results[f"compiled_mask_agreement_min_{count}obj_{k}"] = agreement(masks["eager", count],
                                                                                   masks["compiled", count])
                if ("meta_vos", count) in masks:
                    results[f"compiled_over_meta_vos_{count}obj_{k}"] = (
                        results[f"compiled_track_ms_{count}obj_{k}"] / results[f"meta_vos_track_ms_{count}obj_{k}"])
                    results[f"meta_vos_mask_agreement_min_{count}obj_{k}"] = agreement(masks["eager", count],
                                                                                       masks["meta_vos", count])
    return results


def agreement(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    """Return the worst frame's share of pixels on which two runs' masks of one object agree."""
    return float(min(np.mean(a == b) for a, b in zip(ours, theirs, strict=True)))


def meta_vos_run(checkpoint: str, name: str, size: int, device: str, clip: list[np.ndarray], prompts: list[Prompt],
                 sync: Callable[[], None], label: str) -> tuple[float, float, list[np.ndarray]]:
    """Meta's VOS predictor on `clip`, `prompts` on the first frame, stepped one frame at a time.

    Returns the median ms per frame once the memory is full, the seconds until then (building
    and compiling: Meta compiles on the first calls), and the first object's masks.
    """
    start = time.perf_counter()
    meta = MetaLiveStream(checkpoint, clip, size, model=name, device=device, vos_optimized=True)
    times, masks = [], []
    for t in tqdm(range(len(clip)), desc=label, leave=False):
        begun = time.perf_counter()
        found = [meta.add_prompt(0, prompt) for prompt in prompts][-1] if t == 0 else meta.track(t)
        sync()
        times.append((time.perf_counter() - begun) * 1e3)
        masks.append(found[prompts[0].object_id])
        if t == FULL_MEMORY - 1:
            warm_up_s = time.perf_counter() - start
    return statistics.median(times[FULL_MEMORY:]), warm_up_s, masks
