"""sam2_bench: speed and memory of sam2_ros, measured side by side in one run, as JSON."""
from __future__ import annotations

import argparse
import functools
import gc
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from sam2_ros.core.contours import describe
from sam2_ros.core.encoding import encode
from sam2_ros.core.model import LoadedModel, ModelSpec, load_model, resolve_device, write_random_checkpoint
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.segmenter import Segmenter
from sam2_ros.core.tracker import HOLE_FILLING, HOLE_FILLING_NOTE, StreamingTracker
from sam2_ros.tools.measure import (
    camera_frame,
    depth_scene,
    eight_boxes,
    median_ms,
    per_frame_ms,
    polygons_per_object,
    rss_mb,
    slope,
    spread_clicks,
)
from sam2_ros.tools.meta_live import MetaLiveStream
from sam2_ros.tools.scenes import object_box, pan_clip


def bench_everything(model: LoadedModel, image: np.ndarray, frame, points_per_side: int, repeats: int,
                     sync: Callable[[], None]) -> dict:
    """Segment everything: ours on the cached frame against Meta's generator, which encodes the image again."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from sam2_ros.core.everything import Everything, EverythingSettings
    settings = EverythingSettings(points_per_side=points_per_side)
    ours = Everything(model, settings)
    meta = SAM2AutomaticMaskGenerator(model.sam, points_per_side=points_per_side)
    side = model.image_size // 16  # Meta hard-codes feature sizes for 1024 inputs
    meta.predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
    chunk = ours.chunk()
    same_calls = SAM2AutomaticMaskGenerator(model.sam, points_per_side=points_per_side, points_per_batch=chunk)
    same_calls.predictor._bb_feat_sizes = meta.predictor._bb_feat_sizes
    results = {"everything_points_per_side": points_per_side, "everything_points_per_call": chunk,
               "everything_ms": median_ms(lambda: ours.propose(frame), repeats, sync),
               "meta_everything_ms": median_ms(lambda: meta.generate(image), repeats, sync),
               "meta_everything_ms_same_calls": median_ms(lambda: same_calls.generate(image), repeats, sync)}
    results["everything_over_meta"] = results["everything_ms"] / results["meta_everything_ms"]
    results["everything_over_meta_same_calls"] = results["everything_ms"] / results["meta_everything_ms_same_calls"]
    return results


def bench_core(model: LoadedModel, repeats: int, sync: Callable[[], None], everything_points: int = 16) -> dict:
    """Encode, decode (1 and 8 objects, batched and one by one), cache reuse, contours."""
    image = camera_frame()
    height, width = image.shape[:2]
    segmenter = Segmenter(model, cache_size=1)  # holds "frame" only
    scratch = Segmenter(model, cache_size=1)  # every frame new: pays the encoder
    click = [Prompt(object_id=1, points=np.array([[width / 2, height / 2]]), point_labels=np.array([1]))]
    boxes = eight_boxes(width, height)
    frame = segmenter.add_frame("frame", image)
    fresh_keys = iter(range(10**9))

    def first_prompt():
        scratch.segment(image, click, key=next(fresh_keys))

    mask = np.zeros((1080, 1920), np.uint8)
    yy, xx = np.mgrid[:1080, :1920]
    mask[((yy - 540) ** 2 / 300**2 + (xx - 960) ** 2 / 500**2) < 1] = 1
    mask[500:580, 900:1020] = 0  # a hole

    results = {
        "encode_ms": median_ms(lambda: scratch.add_frame(object(), image), repeats, sync),
        "decode_ms_1obj": median_ms(lambda: segmenter.predict(click, frame), repeats, sync),
        "decode_ms_8obj_batched": median_ms(lambda: segmenter.predict(boxes, frame), repeats, sync),
        "decode_ms_8obj_sequential": median_ms(
            lambda: [segmenter.predict([box], frame) for box in boxes], repeats, sync),
        "first_prompt_ms": median_ms(first_prompt, repeats, sync),
        "cached_prompt_ms": median_ms(lambda: segmenter.segment(image, click, key="frame"), repeats, sync),
        "contours_ms_1080p": median_ms(lambda: describe(mask), repeats, sync),
    }
    three = segmenter.predict(boxes[:3], frame).objects
    results.update(bench_messages(three, repeats))
    results.update(bench_geometry(three, repeats))
    results.update(bench_everything(model, image, frame, everything_points, min(repeats, 3), sync))
    results["cached_prompt_ratio"] = results["cached_prompt_ms"] / results["first_prompt_ms"]
    results["batched_over_sequential_8obj"] = (results["decode_ms_8obj_batched"]
                                               / results["decode_ms_8obj_sequential"])
    return results


def bench_messages(objects, repeats: int) -> dict:
    """Masks -> SegmentationResult (contours, crops) and its CDR serialisation, 3 objects at 640x480."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from sam2_ros.core.settings import OutputSettings
    from sam2_ros.ros.results import result_message

    settings = OutputSettings(contour_epsilon=1.0)
    message = result_message(objects, Header(), objects[0].mask.shape, settings)
    return {"result_message_ms": median_ms(lambda: result_message(objects, Header(), objects[0].mask.shape,
                                                                   settings), repeats, lambda: None),
            "serialize_ms": median_ms(lambda: serialize_message(message), repeats, lambda: None),
            "result_polygons_per_object": polygons_per_object(message)}


GPU_MODELS = {"tiny": "sam2.1_hiera_tiny", "large": "sam2.1_hiera_large", "edgetam": "edgetam",
              "efficienttam_s": "efficienttam_s", "efficienttam_s_2": "efficienttam_s_2"}
# What the goals compare comes first (tiny float32 eager, tiny bfloat16 compiled, the node at 1024,
# Meta's VOS predictor beside ours, TensorRT): a lent machine's few minutes may end the run before
# the rest. The node comes before Meta's predictor: it reuses the kernels just compiled for ours,
# while Meta's autotunes every kernel afresh (minutes, nobody knows how many on a lent GPU).
FIRST_GPU_RUNS = (("tiny", "float32", False), ("tiny", "bfloat16", True))
GOAL_STEPS = ("node", "meta_vos", "tensorrt")


def run_tag(model: str, precision: str, compiled: bool) -> str:
    """Name a run as its keys end: tiny_bfloat16_compiled."""
    return f"{model}_{precision}{'_compiled' if compiled else ''}"


def gpu_plan(models: list[str]) -> list[str]:
    """List the gpu suite's steps in the order they run: the goals' comparisons, then every other run once."""
    unknown = sorted(set(models) - set(GPU_MODELS))
    if unknown:
        raise ValueError(f"--gpu-models: no model {unknown}; choose among {', '.join(GPU_MODELS)}")
    first = [run_tag(*run) for run in FIRST_GPU_RUNS if run[0] in models]
    rest = [run_tag(model, precision, compiled) for model in models for precision in ("float32", "bfloat16")
            for compiled in (False, True) if (model, precision, compiled) not in FIRST_GPU_RUNS]
    return [*first, *GOAL_STEPS, *rest]


def run_steps(plan: list[str], steps: Callable[[str], dict], results: dict,
              save: Callable[[dict], None]) -> dict:
    """Run each step of `plan` not yet in `results["gpu_done"]`, keeping its figures and seconds as it ends.

    `save` gets the figures after each step, so a run stopped at a time limit keeps them, and a
    later run given them (`--resume`) takes up where it stopped. A step that fails is named in
    `gpu_skipped` with its error, and the next one runs.
    """
    done, seconds = results.setdefault("gpu_done", []), results.setdefault("gpu_step_s", {})
    skipped = results.setdefault("gpu_skipped", [])
    for name in plan:
        if name in done:
            continue
        start = time.monotonic()
        try:
            results.update(steps(name))
        except Exception as error:
            skipped.append(f"{name}: {type(error).__name__}: {error}")
        seconds[name] = round(time.monotonic() - start, 1)
        done.append(name)
        save(results)
    return results


def gpu_ratios(results: dict) -> dict:
    """Work out the goals' ratios from the figures there are: ours over Meta's VOS predictor, TensorRT over PyTorch."""
    ratios = {}
    for count in (1, 8):
        pairs = {f"gpu_ours_over_meta_vos_{count}obj_tiny_bfloat16":
                 (f"gpu_track_ms_{count}obj_tiny_bfloat16_compiled", f"gpu_meta_vos_ms_{count}obj_tiny_bfloat16"),
                 # the comparison: TensorRT against PyTorch at its fastest
                 f"gpu_tensorrt_over_torch_bfloat16_compiled_{count}obj":
                 (f"gpu_track_ms_{count}obj_tiny_float32_tensorrt", f"gpu_track_ms_{count}obj_tiny_bfloat16_compiled")}
        for ratio, (over, under) in pairs.items():
            if results.get(over) and results.get(under):
                ratios[ratio] = results[over] / results[under]
    return ratios


def bench_gpu(frames: int, models: list[str], save: Callable[[dict], None] = lambda _: None,
              previous: dict | None = None) -> dict:
    """On CUDA: each model encodes and tracks 1 and 8 objects in float32 and bfloat16, eager and compiled.

    Beside them Meta's VOS-optimised predictor (every component compiled, bfloat16, as Meta times
    it) is driven live on the same frames and prompts, and the node runs end to end at 1024 with a
    30 Hz camera. Random weights take the time real ones do. `save` gets the figures so far after
    each step; `previous` (an earlier run's figures) leaves out the steps it has done.
    """
    plan = gpu_plan(models)
    if not torch.cuda.is_available():
        return {"gpu": "skipped: CUDA not available"}
    if previous is not None and previous.get("gpu_frames") != frames:
        raise ValueError(f"--resume: the figures there were taken with {previous.get('gpu_frames')} frames a run, "
                         f"not {frames}: resume with the same --gpu-frames, or start afresh without --resume")
    with tempfile.TemporaryDirectory() as scratch:
        return _bench_gpu(frames, plan, Path(scratch), save, previous or {})


def _bench_gpu(frames: int, plan: list[str], checkpoint_dir: Path, save: Callable[[dict], None],
               previous: dict) -> dict:
    images, _ = pan_clip(frames)
    results: dict = {"gpu_skipped": [], **previous, "gpu": torch.cuda.get_device_name(), "gpu_torch": torch.__version__,
                     "gpu_cuda": torch.version.cuda, "gpu_frames": frames, "gpu_plan": plan}
    if not HOLE_FILLING and HOLE_FILLING_NOTE not in results["gpu_skipped"]:
        results["gpu_skipped"].append(HOLE_FILLING_NOTE)
    skipped = results["gpu_skipped"]

    def checkpoint(model: str) -> str:
        path = checkpoint_dir / f"{GPU_MODELS[model]}.pt"
        return str(path if path.exists() else write_random_checkpoint(path, GPU_MODELS[model]))

    runs = {run_tag(m, p, c): (m, p, c) for m in GPU_MODELS for p in ("float32", "bfloat16") for c in (False, True)}

    def step(name: str) -> dict:
        if name == "node":
            return gpu_node_end_to_end(Path(checkpoint("tiny")))
        if name == "meta_vos":
            return _meta_vos(checkpoint("tiny"), images, torch.cuda.synchronize, skipped)
        if name == "tensorrt":
            return _tensorrt(Path(checkpoint("tiny")), images, torch.cuda.synchronize, skipped)
        model_key, precision, compiled = runs[name]
        return _gpu_track(model_key, precision, compiled, checkpoint(model_key), images, skipped)

    def keep(figures: dict) -> None:
        figures.update(gpu_ratios(figures))
        save(figures)
    return run_steps(plan, step, results, keep)


def _gpu_track(model_key: str, precision: str, compiled: bool, checkpoint: str, images: list,
               skipped: list) -> dict:
    """One model's encoding and tracking of 1 and 8 clicked objects on the GPU, ms per frame."""
    height, width = images[0].shape[:2]
    sync, results = torch.cuda.synchronize, {}
    tag = run_tag(model_key, precision, compiled)
    try:
        model = load_model(ModelSpec(name=GPU_MODELS[model_key], checkpoint=checkpoint, device="cuda",
                                     precision=precision, compile=compiled))
        results[f"gpu_encode_ms_{tag}"] = median_ms(lambda m=model: encode(m, images[0]), 5, sync)
        for count in (1, 8):
            tracker = StreamingTracker(model, max_objects=count)  # a compiled model compiles here
            results[f"gpu_track_ms_{count}obj_{tag}"] = per_frame_ms(
                len(images), lambda t: tracker.track(images[t]),
                lambda: [tracker.add_prompt(p) for p in spread_clicks(count, width, height)],
                sync, f"{tag} {count} obj", warm_up=4)
    except Exception as error:  # e.g. no triton for torch.compile: the 1-object figures stay
        skipped.append(f"{tag}: {type(error).__name__}: {error}")
    tracker = model = None  # both hold the model's CUDA memory
    gc.collect()
    torch.cuda.empty_cache()
    return results


def _tensorrt(checkpoint: Path, images: list, sync: Callable[[], None], skipped: list) -> dict:
    """Tiny at 1024 on exported graphs through ONNX Runtime's TensorRT provider, beside float32 PyTorch."""
    from sam2_ros.core.export import export
    height, width = images[0].shape[:2]
    results = {}
    try:
        folder = checkpoint.parent / "tiny_graphs"
        export(load_model(ModelSpec(checkpoint=str(checkpoint), device="cpu", precision="float32")), folder)
        models = {backend: load_model(ModelSpec(checkpoint=str(checkpoint), device="cuda", precision="float32",
                                                backend=backend, graphs=str(folder)))
                  for backend in ("torch", "tensorrt")}
        for count in (1, 8):
            masks = {}
            for backend, model in models.items():
                tracker = StreamingTracker(model, max_objects=count)
                masks[backend] = []
                ms = per_frame_ms(len(images), lambda t: masks[backend].append(tracker.track(images[t]).objects),
                                  lambda: [tracker.add_prompt(p) for p in spread_clicks(count, width, height)],
                                  sync, f"{backend} {count} obj", warm_up=4)
                results[f"gpu_track_ms_{count}obj_tiny_float32_{backend}"] = ms
            results[f"gpu_tensorrt_mask_agreement_min_{count}obj"] = float(min(
                np.mean(a.mask == b.mask) for ours, theirs in zip(masks["tensorrt"], masks["torch"])
                for a, b in zip(ours, theirs)))
    except Exception as error:  # no TensorRT provider on the lent machine: say so
        skipped.append(f"TensorRT: {type(error).__name__}: {error}")
    gc.collect()
    torch.cuda.empty_cache()
    return results


def _meta_vos(checkpoint: str, images: list, sync: Callable[[], None], skipped: list) -> dict:
    """Meta's SAM2VideoPredictorVOS (bfloat16 autocast, as in Meta's examples) stepped live, 1 and 8 objects."""
    height, width = images[0].shape[:2]
    results = {}
    for count in (1, 8):
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                meta = MetaLiveStream(checkpoint, images, 1024, device="cuda", vos_optimized=True)
                clicks = spread_clicks(count, width, height)
                results[f"gpu_meta_vos_ms_{count}obj_tiny_bfloat16"] = per_frame_ms(
                    len(images), meta.track, lambda: [meta.add_prompt(0, p) for p in clicks],
                    sync, f"meta vos {count} obj", warm_up=4)
        except Exception as error:
            skipped.append(f"Meta's VOS predictor, {count} objects: {type(error).__name__}: {error}")
        meta = None
        gc.collect()
        torch.cuda.empty_cache()
    return results


def gpu_node_end_to_end(checkpoint: Path, device: str = "cuda", image_size: int = 1024, compile: bool = True,
                        seconds: float = 10.0, round_trips: int = 20) -> dict:
    """Run the node (precision auto, compiled) with 3 objects and a 30 Hz camera: its results per second, its model's.

    Beside them, what its masks cost: random weights' masks are fragments (thousands of polygons
    at 1024 where a real object has a handful), so polygons per object and the result's
    postprocessing time say how much of a shortfall is theirs rather than the node's.
    """
    from sam2_ros.tools.node_probe import NodeProbe
    # 3 objects are stepped as a group of 4 with any max_objects; 4 leaves out compiling groups of 8 and 16
    overrides = {"checkpoint": str(checkpoint), "device": device, "image_size": image_size, "compile": compile,
                 "max_objects": 4}
    image = camera_frame()
    with NodeProbe(overrides) as probe:
        probe.settle(image, [np.array(p.box) for p in eight_boxes(640, 480)[:3]])
        latencies = [probe.round_trip(image) for _ in range(round_trips)]
        postprocess_ms = [r.postprocess_ms for _, r in probe.results[-round_trips:]]
        polygons = polygons_per_object(probe.results[-1][1])
        ages, model_ms, skipped, intervals = probe.stream(image, rate_hz=30.0, seconds=seconds)
    node_fps = 1e3 / statistics.median(intervals)
    figures = {"gpu_node_latency_ms_p50": statistics.median(latencies),
               "gpu_node_postprocess_ms_p50": statistics.median(postprocess_ms),
               "gpu_node_polygons_per_object": polygons, "gpu_stream_result_age_ms_p50": statistics.median(ages),
               "gpu_stream_model_period_ms": model_ms, "gpu_stream_frames_skipped": skipped,
               "gpu_node_fps": node_fps, "gpu_node_fps_over_model_fps": node_fps / (1e3 / model_ms)}
    return {f"{key}_{image_size}": value for key, value in figures.items()}


def bench_geometry(objects, repeats: int) -> dict:
    """3D of three objects at 640x480 (registration, erosion, robust extent) and their cloud, one thread."""
    from sam2_ros.core.geometry import Intrinsics, depth_in_metres, mask_on_depth, object_3d, register
    camera = Intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    registration, metres = register(camera, camera), depth_in_metres(depth_scene(), "16UC1")

    def three():
        return [object_3d(mask_on_depth(o.mask, registration), metres, camera) for o in objects]
    return {"geometry_ms_3obj": median_ms(three, repeats, lambda: None)}


def bench_node(checkpoint: str, args: argparse.Namespace, frames: int) -> dict:
    """Time the node over real topics, in-process, against the model's own time.

    Same frames (3 objects, 640x480) one by one, then with a depth image per frame (3D on), then
    a 30 Hz camera against a far slower model.
    """
    from sam2_ros.tools.node_probe import NodeProbe

    overrides = {"checkpoint": checkpoint, "device": args.device, "image_size": args.image_size,
                 "precision": args.precision, "model": args.model, "depth": True,
                 # depth comes before each frame once sent: nothing to wait for; 0 keeps the first
                 # phase (no depth yet) free of the startup wait for a depth stream
                 "depth_wait_ms": 0.0}
    image = camera_frame()
    with NodeProbe(overrides) as probe:
        probe.round_trip(image)
        bare = [probe.round_trip(image) for _ in range(frames)]  # transport and conversion alone
        bare_model_ms = probe.node.counts().model_ms[-frames:]
        probe.settle(image, [np.array(p.box) for p in eight_boxes(640, 480)[:3]])
        latencies = [probe.round_trip(image) for _ in range(frames)]  # no depth sent yet: 2D only
        model_ms = probe.node.counts().model_ms[-frames:]
        postprocess_ms = [r.postprocess_ms for _, r in probe.results[-frames:]]
        polygons = polygons_per_object(probe.results[-1][1])
        probe.start_depth(depth_scene(), focal=500.0)
        probe.round_trip(image)
        latencies_3d = [probe.round_trip(image) for _ in range(frames)]
        model_ms_3d = probe.node.counts().model_ms[-frames:]
        postprocess_3d = [r.postprocess_ms for _, r in probe.results[-frames:]]
        with_3d = sum(o.has_3d for _, r in probe.results[-frames:] for o in r.objects)
        probe.settle(image, [np.array(p.box) for p in eight_boxes(640, 480)[3:]])  # 8 objects, 3D on
        latencies_8 = [probe.round_trip(image) for _ in range(frames)]
        model_ms_8 = probe.node.counts().model_ms[-frames:]
        seconds = max(5.0, frames * 0.5, 8 * statistics.median(model_ms) / 1e3)  # at least 8 model periods
        ages, period_ms, skipped, intervals = probe.stream(image, rate_hz=30.0, seconds=seconds)
    # Overhead frame by frame (round trip minus that frame's model time): the model's own
    # frame-to-frame spread is far larger than the overhead, so medians taken apart would hide it.
    return {
        "node_latency_ms_p50": statistics.median(latencies),
        "node_latency_ms_p95": float(np.percentile(latencies, 95)),
        "model_ms_p50": statistics.median(model_ms),
        "node_overhead_ms_p50": statistics.median(np.subtract(latencies, model_ms)),
        "node_overhead_ms_p95": float(np.percentile(np.subtract(latencies, model_ms), 95)),
        "node_postprocess_ms_p50": statistics.median(postprocess_ms),
        "node_polygons_per_object": polygons,
        "node_overhead_ms_p50_0obj": statistics.median(np.subtract(bare, bare_model_ms)),
        "node_overhead_ms_p50_3d": statistics.median(np.subtract(latencies_3d, model_ms_3d)),
        # the 3D work still left when the model is done: postprocessing with depth minus without
        "node_3d_ms_p50": statistics.median(postprocess_3d) - statistics.median(postprocess_ms),
        "node_objects_with_3d_per_frame": with_3d / frames,
        "node_latency_ms_p50_8obj": statistics.median(latencies_8),
        "model_ms_p50_8obj": statistics.median(model_ms_8),
        "node_overhead_ms_p50_8obj": statistics.median(np.subtract(latencies_8, model_ms_8)),
        "stream_rate_hz": 30.0,
        "stream_result_age_ms_max": max(ages),
        "stream_model_period_ms": period_ms,
        "max_result_age_over_model_period": max(ages) / period_ms,
        "stream_result_age_ms_p50": statistics.median(ages),
        "stream_result_interval_ms_p50": statistics.median(intervals),
        # results per second over the model's frames per second: what the gpu suite's goal compares
        "node_fps_over_model_fps": period_ms / statistics.median(intervals),
        "stream_age_trend_ms_per_result": slope(ages),
        "stream_frames_skipped": skipped,
    }


def bench_tracker(model: LoadedModel, checkpoint: str, frames: int, sync: Callable[[], None]) -> dict:
    """Ours and Meta's SAM2VideoPredictor on the same frames and prompts (2 objects), in turn."""
    images, truths = pan_clip(frames)
    prompts = [Prompt(object_id=1, box=object_box(truths[0])),
               Prompt(object_id=2, points=np.array([[250.0, 50.0]]), point_labels=np.array([1]))]
    window = model.sam.max_obj_ptrs_in_encoder + model.sam.num_maskmem

    tracker = StreamingTracker(model)
    times, rss = [], []
    for t, image in enumerate(tqdm(images, desc="sam2_ros tracker", leave=False)):
        start = time.perf_counter()
        tracker.track(image)
        if t == 0:
            for prompt in prompts:
                tracker.add_prompt(prompt)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
        rss.append(rss_mb())
    retained = tracker.retained_tensor_bytes() / 2**20
    del tracker
    gc.collect()

    rss_before = rss_mb()
    start = time.perf_counter()
    meta = MetaLiveStream(checkpoint, images, model.image_size, model.spec.name, str(model.device))
    meta_init_ms = (time.perf_counter() - start) * 1e3
    meta_times = []
    for t in tqdm(range(frames), desc="Meta SAM2VideoPredictor", leave=False):
        start = time.perf_counter()
        meta.track(t)
        if t == 0:
            for prompt in prompts:
                meta.add_prompt(0, prompt)
        sync()
        meta_times.append((time.perf_counter() - start) * 1e3)
    meta_growth = (rss_mb() - rss_before) / frames
    return {
        "frames": frames,
        "tracker_ms_per_frame": statistics.median(times[1:]),
        "meta_ms_per_frame": statistics.median(meta_times[1:]),
        # init_state decodes and preprocesses every frame up front; a live tracker pays that per frame
        "meta_init_ms_per_frame": meta_init_ms / frames,
        "tracker_rss_growth_mb_per_frame": slope(rss[window:]),
        "meta_rss_growth_mb_per_frame": meta_growth,
        "tracker_retained_state_mb": retained,
        "tracker_rss_mb_after_window": rss[min(window, frames - 1)],
        "tracker_rss_mb_end": rss[-1],
    }


def bench_objects(model: LoadedModel, checkpoint: str, frames: int, sync: Callable[[], None],
                  counts: tuple[int, ...] = (1, 2, 4, 8)) -> dict:
    """Per-frame time (encode included) for n objects: ours batched, ours object by object, Meta's."""
    images, _ = pan_clip(frames)
    height, width = images[0].shape[:2]
    results = {}
    for count in counts:
        prompts = spread_clicks(count, width, height)
        for key, batch in (("tracker", True), ("reference", False)):
            tracker = StreamingTracker(model, max_objects=count, batch_objects=batch)
            results[f"{key}_ms_per_frame_{count}obj"] = per_frame_ms(
                frames, lambda t: tracker.track(images[t]), lambda: [tracker.add_prompt(p) for p in prompts],
                sync, f"{key} {count} obj")
        meta = MetaLiveStream(checkpoint, images, model.image_size, model.spec.name, str(model.device))
        results[f"meta_ms_per_frame_{count}obj"] = per_frame_ms(
            frames, meta.track, lambda: [meta.add_prompt(0, p) for p in prompts], sync, f"Meta {count} obj")
        gc.collect()
    last, first = counts[-1], counts[0]
    results[f"tracker_{last}obj_over_{first}obj"] = (results[f"tracker_ms_per_frame_{last}obj"]
                                                     / results[f"tracker_ms_per_frame_{first}obj"])
    results[f"tracker_over_meta_{last}obj"] = (results[f"tracker_ms_per_frame_{last}obj"]
                                               / results[f"meta_ms_per_frame_{last}obj"])
    results[f"tracker_over_reference_{last}obj"] = (results[f"tracker_ms_per_frame_{last}obj"]
                                                    / results[f"reference_ms_per_frame_{last}obj"])
    return results


# Each frame's outputs wait this long for depth in the prompts suite: the delivery keeps up with
# the worker at input size 256 here, so no backlog builds between its runs.
WAIT_MS = 250.0


def bench_prompts(run: BenchRun) -> dict:
    """Time a 30 Hz camera, 3D on and depth never reaching the frames' stamps, with and without prompts.

    Every frame's outputs then wait depth_wait_ms for its depth frame on the delivery thread.
    Ten corrections 100 ms apart must not slow the model down (the worker never waits for a
    prompt's publication): frames the worker took per second, without prompts and with them,
    alternated twice in one node.
    """
    from sam2_ros.tools.node_probe import NodeProbe

    args = run.args
    overrides = {"checkpoint": run.checkpoint, "device": args.device, "image_size": args.image_size,
                 "precision": args.precision, "model": args.model, "depth": True, "depth_wait_ms": WAIT_MS}
    image = camera_frame()
    box = eight_boxes(640, 480)[0].box
    correction = Prompt(object_id=1, points=np.array([[box[0] + 20.0, box[1] + 20.0]]), point_labels=np.array([1]))
    taken: dict[str, list[float]] = {"none": [], "prompts": []}
    with NodeProbe(overrides) as probe:
        probe.settle(image, [np.array(box)])
        probe.start_depth(depth_scene(), focal=500.0, behind_s=3600.0)
        for _ in range(2):
            taken["none"].append(probe.taken_per_second(image, 30.0, args.prompt_seconds))
            taken["prompts"].append(probe.taken_per_second(image, 30.0, args.prompt_seconds,
                                                           prompts=[correction] * 10, prompt_period_s=0.1))
    without, with_prompts = statistics.median(taken["none"]), statistics.median(taken["prompts"])
    return {"prompts_depth_wait_ms": WAIT_MS, "prompts_seconds_per_run": args.prompt_seconds,
            "prompts_frames_per_s_without": without, "prompts_frames_per_s_with": with_prompts,
            "prompts_frames_per_s_with_over_without": with_prompts / without}


def markdown(results: dict) -> str:
    """Format the results as a two-column markdown table for notes and READMEs."""
    rows = [f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |"
            for key, value in results.items()]
    return "\n".join(["| key | value |", "|---|---|", *rows])


class BenchRun:
    """What a suite is given: the command line, a checkpoint, and the model, loaded once on first use."""

    def __init__(self, args: argparse.Namespace, checkpoint: str):
        self.args, self.checkpoint = args, checkpoint
        self.device = resolve_device(args.device)

    @functools.cached_property
    def model(self) -> LoadedModel:
        args = self.args
        return load_model(ModelSpec(name=args.model, checkpoint=self.checkpoint, device=args.device,
                                    precision=args.precision, image_size=args.image_size))

    def sync(self) -> None:
        """Wait for the device's queued work, so a time covers it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@dataclass(frozen=True)
class Suite:
    """One --suite: what it runs, and whether `--suite all` runs it (the long ones run only when named)."""

    run: Callable[[BenchRun], dict]
    in_all: bool = True


def _models(run: BenchRun) -> dict:
    from sam2_ros.tools.models_bench import bench_models
    return bench_models(run.args.device, run.args.model_frames, run.args.repeats, run.sync)


def _stream(run: BenchRun) -> dict:
    from sam2_ros.tools.stream import bench_stream  # the node in its own process, as robots run it
    return bench_stream(run.checkpoint, run.args.image_size, run.args.device, run.args.stream_seconds)


def _compiled(run: BenchRun) -> dict:
    from sam2_ros.tools.compiled_bench import bench_compiled
    return bench_compiled(run.args.device, run.args.model_frames, run.sync)


def _backends(run: BenchRun) -> dict:
    from sam2_ros.tools.backends_bench import bench_backends
    return bench_backends(run.args.model_frames, run.sync)


def _text(run: BenchRun) -> dict:
    from sam2_ros.tools.text_bench import bench_text
    args = run.args
    return bench_text(run.model, args.text_detector, args.text_size, args.text_frames, run.sync)


def _gpu(run: BenchRun) -> dict:
    def save(figures: dict) -> None:  # the figures so far, in case the run is stopped
        if run.args.json:
            run.args.json.write_text(json.dumps({"gpu_partial": True, **figures}, indent=2) + "\n")
    previous = None  # --resume: an earlier gpu run's figures (a dry run's file has no steps done)
    if run.args.resume and run.args.json and run.args.json.exists():
        previous = json.loads(run.args.json.read_text())
        previous = {k: v for k, v in previous.items() if k != "gpu_partial"} if "gpu_done" in previous else None
    return bench_gpu(run.args.gpu_frames, run.args.gpu_models.split(","), save, previous)


def _glue(run: BenchRun) -> dict:
    from sam2_ros.tools.glue import bench_glue
    return bench_glue(run.args.glue_frames)


def _soak(run: BenchRun) -> dict:
    from sam2_ros.tools.soak import soak
    args = run.args
    return soak({"checkpoint": run.checkpoint, "device": args.device, "image_size": args.image_size,
                 "precision": args.precision, "model": args.model}, args.minutes)


SUITES: dict[str, Suite] = {
    "core": Suite(lambda run: bench_core(run.model, run.args.repeats, run.sync, run.args.everything_points)),
    "tracker": Suite(lambda run: {**bench_tracker(run.model, run.checkpoint, run.args.frames, run.sync),
                                  **bench_objects(run.model, run.checkpoint, run.args.object_frames, run.sync)}),
    "node": Suite(lambda run: bench_node(run.checkpoint, run.args, run.args.node_frames)),
    "gpu": Suite(_gpu),
    "glue": Suite(_glue),  # the node after SAM 2, on real objects' outlines
    "prompts": Suite(bench_prompts, in_all=False),
    "stream": Suite(_stream, in_all=False),
    "models": Suite(_models, in_all=False),  # every model and input size, each loaded in turn
    "compiled": Suite(_compiled, in_all=False),  # compiles two models: minutes on a CPU
    "backends": Suite(_backends, in_all=False),  # exports two models: minutes on a CPU
    "text": Suite(_text, in_all=False),  # two detectors at full size: a minute on a CPU
    "soak": Suite(_soak, in_all=False),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="all",
                        help=f"all: {', '.join(name for name, suite in SUITES.items() if suite.in_all)}")
    parser.add_argument("--minutes", type=float, default=20.0, help="soak suite: how long to stream")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--checkpoint", help="Meta's .pt; default: seeded random weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto, float32, bfloat16 or float16 (as the node)")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=60, help="tracker suite: frames per run")
    parser.add_argument("--object-frames", type=int, default=12,
                        help="tracker suite: frames per run of 1, 2, 4 and 8 objects (the first two not timed)")
    parser.add_argument("--everything-points", type=int, default=16,
                        help="core suite: points per side of segment everything (Meta's default is 32)")
    parser.add_argument("--node-frames", type=int, default=20, help="node suite: frames timed one by one")
    parser.add_argument("--prompt-seconds", type=float, default=4.0,
                        help="prompts suite: seconds of each run (two with prompts, two without)")
    parser.add_argument("--gpu-frames", type=int, default=54, help="gpu suite: frames per configuration")
    parser.add_argument("--gpu-models", default=",".join(GPU_MODELS),
                        help="gpu suite: the models timed, comma-separated (tiny first whatever the order)")
    parser.add_argument("--resume", action="store_true",
                        help="gpu suite: keep the figures already in --json and run only the steps they lack "
                             "(a run stopped at a lent machine's time limit, taken up by the next call)")
    parser.add_argument("--glue-frames", type=int, default=30,
                        help="glue suite: frames per size and object count, sent at 30 Hz")
    parser.add_argument("--stream-seconds", type=float, default=20.0, help="stream suite: seconds per run")
    parser.add_argument("--text-detector", action="append", default=[],
                        help="text suite: a detector name or saved folder to time (repeatable); default: "
                             "Grounding DINO tiny's and OWLv2 base's architectures with random weights")
    parser.add_argument("--text-size", type=int, default=0,
                        help="text suite: the detectors' input size (0: each one's own, 800 and 960)")
    parser.add_argument("--text-frames", type=int, default=8, help="text suite: frames tracked without a pass")
    parser.add_argument("--model-frames", type=int, default=12,
                        help="models suite: frames per run (those after the 8th, when the memory is full, are timed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites and print (and optionally save) one JSON object."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or str(write_random_checkpoint(Path(scratch) / "random.pt", args.model))
        results = run_suites(args, checkpoint)
    text = json.dumps(results, indent=2)
    print(text)
    print(markdown(results), file=sys.stderr)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


def run_suites(args: argparse.Namespace, checkpoint: str) -> dict:
    """Run each chosen suite in the table's order; the model is loaded once, by the first that needs it."""
    run = BenchRun(args, checkpoint)
    results: dict = {"device": str(run.device), "model": args.model, "image_size": args.image_size,
                     "precision": args.precision, "random_weights": args.checkpoint is None,
                     "torch_threads": torch.get_num_threads()}
    for name, suite in SUITES.items():
        if args.suite == name or (args.suite == "all" and suite.in_all):
            results.update(suite.run(run))
    return results


if __name__ == "__main__":
    sys.exit(main())
