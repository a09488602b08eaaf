"""What every benchmark suite measures with: timing, memory, and the frames and prompts they time.

Suites (bench.py's table, models_bench.py, stream.py, soak.py) import from here and never from
each other.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import psutil
import skimage.data
from tqdm import tqdm

from sam2_ros.core.prompts import Prompt


def median_ms(action: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall time of `action` over `repeats` runs, after one warm-up."""
    action()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def camera_frame(height: int = 480, width: int = 640) -> np.ndarray:
    """Return a real photograph at a camera's resolution."""
    import cv2
    return cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)


def eight_boxes(width: int, height: int) -> list[Prompt]:
    """Eight box prompts tiled over the frame (same shape, so they batch)."""
    boxes = [(x * width / 4, y * height / 2, (x + 1) * width / 4, (y + 1) * height / 2)
             for y in range(2) for x in range(4)]
    return [Prompt(object_id=i + 1, box=np.array(box, np.float32)) for i, box in enumerate(boxes)]


def polygons_per_object(result) -> float:
    """Mean contour polygons per object: what contour and message costs scale with."""
    return float(np.mean([len(o.contour_lengths) for o in result.objects])) if result.objects else 0.0


def depth_scene(height: int = 480, width: int = 640) -> np.ndarray:
    """Return a depth image (16UC1 mm): a wall at 2 m, boxes at 0.8, 1.0 and 1.2 m under eight_boxes' first three."""
    depth = np.full((height, width), 2000, np.uint16)
    for i, prompt in enumerate(eight_boxes(width, height)[:3]):
        x0, y0, x1, y1 = (int(v) for v in prompt.box)
        depth[y0 + 20:y1 - 20, x0 + 20:x1 - 20] = 800 + 200 * i
    return depth


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def slope(values: list[float]) -> float:
    """Least-squares growth per step."""
    return float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) > 1 else 0.0


def spread_clicks(count: int, width: int, height: int) -> list[Prompt]:
    """One foreground click per object, spread over the frame (all on frame 0: one memory layout)."""
    return [Prompt(object_id=i + 1, points=np.array([[width * (i % 4 + 0.5) / 4, height * (i // 4 + 0.5) / 2]]),
                   point_labels=np.array([1])) for i in range(count)]


def per_frame_ms(frames: int, track: Callable[[int], object], prompt: Callable[[], object],
                 sync: Callable[[], None], label: str, warm_up: int = 2) -> float:
    """Median time of track(t) per frame after `warm_up` frames; the prompts go in after frame 0."""
    times = []
    for t in tqdm(range(frames), desc=label, leave=False):
        start = time.perf_counter()
        track(t)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
        if t == 0:
            prompt()
    return statistics.median(times[warm_up:])
