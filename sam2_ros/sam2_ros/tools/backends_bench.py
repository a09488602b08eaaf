"""sam2_bench --suite backends: tracking on exported graphs beside PyTorch eager, in one run.

SAM 2.1 tiny at 512 and EdgeTAM at 1024 (random weights: speed does not depend on them), 1 and
4 objects, once the memory is full; each backend whose runtime is installed. With one object the
time each graph takes is reported too, and what is left of a frame (PyTorch between the parts).
On a CPU with bfloat16 instructions, one object also in bfloat16 (PyTorch's autocast, OpenVINO's
graphs), its masks against float32 PyTorch's.
"""
from __future__ import annotations

import gc
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from sam2_ros.core import backends
from sam2_ros.core.export import ExportError, export
from sam2_ros.core.model import ModelSpec, load_model, this_cpu_bf16_flags, write_random_checkpoint
from sam2_ros.tools.compiled_bench import CONFIGS, OBJECTS
from sam2_ros.tools.measure import camera_frame, eight_boxes, rss_mb
from sam2_ros.tools.models_bench import FULL_MEMORY, key, track_run


class PartTimer:
    """Milliseconds each exported graph spends, while installed (the bench's profile, not the node's)."""

    def __init__(self):
        self.spent: dict[str, list[float]] = defaultdict(list)
        self._call = backends.Graph.__call__

    def __enter__(self) -> PartTimer:
        timer, call = self, self._call

        def timed(graph, *tensors):
            start = time.perf_counter()
            out = call(graph, *tensors)
            timer.spent[graph.info.file.removesuffix(".onnx")].append((time.perf_counter() - start) * 1e3)
            return out
        backends.Graph.__call__ = timed
        return self

    def __exit__(self, *exc) -> None:
        backends.Graph.__call__ = self._call


def bench_backends(frames: int, sync: Callable[[], None]) -> dict:
    """Per-frame ms of each backend beside PyTorch's, the best one's speed-up, each graph's share.

    Keys: backends_track_ms_<n>obj_<model>_<size>_<backend>[_bfloat16], backends_best_over_torch_1obj_edgetam_1024.
    """
    if frames <= FULL_MEMORY:
        raise ValueError(f"--model-frames must be over {FULL_MEMORY} (the memory fills first), got {frames}")
    image = camera_frame()
    clip = [np.roll(image, 4 * t, axis=1) for t in range(frames)]
    boxes = eight_boxes(image.shape[1], image.shape[0])
    bf16 = bool(this_cpu_bf16_flags())
    results: dict = {"backends_frames": frames, "backends_skipped": "", "backends_cpu_bf16_instructions": bf16}
    runnable = []
    for backend in ("onnxruntime", "openvino"):  # tensorrt needs a GPU: scripts/gpu_check.sh
        try:
            backends.check_backend(backend)
            runnable.append(backend)
        except ExportError as error:
            results["backends_skipped"] += f"{backend}: {error}; "
    with tempfile.TemporaryDirectory() as scratch:
        for name, size in CONFIGS:
            checkpoint = str(write_random_checkpoint(Path(scratch) / f"{name}.pt", name))
            k = key(name, size)
            spec = ModelSpec(name=name, checkpoint=checkpoint, device="cpu", precision="float32", image_size=size)
            start = time.perf_counter()
            export(load_model(spec), Path(scratch) / k)
            results[f"backends_export_s_{k}"] = time.perf_counter() - start
            masks = {}
            for backend in ("torch", *runnable):
                model = load_model(spec if backend == "torch" else replace(spec, backend=backend,
                                                                            graphs=str(Path(scratch) / k)))
                for count in OBJECTS:
                    with PartTimer() as timer:
                        ms, growth, masks[backend, count] = track_run(model, clip, boxes[:count], sync, rss_mb,
                                                                      f"{backend} {k} {count}")
                    tag = f"{count}obj_{k}_{backend}"
                    results[f"backends_track_ms_{tag}"] = ms
                    results[f"backends_rss_mb_per_frame_{tag}"] = growth
                    if count == 1 and backend != "torch":
                        per_frame = {part: sum(times) / len(clip) for part, times in timer.spent.items()}
                        for part, part_ms in per_frame.items():
                            results[f"backends_part_ms_{part}_{tag}"] = part_ms
                        results[f"backends_part_ms_rest_{tag}"] = ms - sum(per_frame.values())
                    if backend != "torch":
                        results[f"backends_mask_agreement_min_{tag}"] = float(min(
                            np.mean(a == b) for a, b in zip(masks["torch", count], masks[backend, count])))
                del model
                gc.collect()
            for backend in ("torch", "openvino") if bf16 and "openvino" in runnable else ():
                model = load_model(replace(spec, precision="bfloat16") if backend == "torch" else replace(
                    spec, precision="bfloat16", backend=backend, graphs=str(Path(scratch) / k)))
                tag = f"1obj_{k}_{backend}_bfloat16"
                results[f"backends_track_ms_{tag}"], _, mixed = track_run(model, clip, boxes[:1], sync, rss_mb, tag)
                results[f"backends_mask_agreement_min_{tag}"] = float(min(
                    np.mean(a == b) for a, b in zip(masks["torch", 1], mixed)))
                del model
                gc.collect()
    for name, size in CONFIGS:
        k = key(name, size)
        timed = {b: results[f"backends_track_ms_1obj_{k}_{b}"] for b in runnable}
        if timed:
            results[f"backends_best_over_torch_1obj_{k}"] = results[f"backends_track_ms_1obj_{k}_torch"] / min(
                timed.values())
        if f"backends_track_ms_1obj_{k}_openvino_bfloat16" in results:
            results[f"backends_bfloat16_over_torch_float32_1obj_{k}"] = (
                results[f"backends_track_ms_1obj_{k}_torch"] / results[f"backends_track_ms_1obj_{k}_openvino_bfloat16"])
    results["backends_skipped"] = results["backends_skipped"].strip() or "none"
    return results

