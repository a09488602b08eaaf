"""sam2_bench --suite compiled: the compiled tracking step beside the eager one, in one run.

SAM 2.1 tiny at 512 and EdgeTAM at 1024 (random weights: speed does not depend on them), 1 and
4 objects, once the memory is full. The compiled model compiles every shape its tracker can
take while it loads (timed apart); the masks of the first object are compared frame by frame.
"""
from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from sam2_ros.core.model import ModelSpec, load_model, write_random_checkpoint
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.tools.measure import camera_frame, eight_boxes, rss_mb
from sam2_ros.tools.models_bench import FULL_MEMORY, key, track_run

CONFIGS = (("sam2.1_hiera_tiny", 512), ("edgetam", 1024))
OBJECTS = (1, 4)


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
            for count in OBJECTS:
                results[f"compiled_over_eager_{count}obj_{k}"] = (results[f"compiled_track_ms_{count}obj_{k}"]
                                                                  / results[f"eager_track_ms_{count}obj_{k}"])
                results[f"compiled_mask_agreement_min_{count}obj_{k}"] = float(min(
                    np.mean(a == b) for a, b in zip(masks["eager", count], masks["compiled", count])))
    return results
