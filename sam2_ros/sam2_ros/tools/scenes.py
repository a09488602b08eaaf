"""Synthetic video with known motion, so masks can be scored.

A camera pans (and zooms) over a real photo while an object moves over it; the object's mask
on every frame is known exactly.
"""
import cv2
import numpy as np
import skimage.data

HEIGHT, WIDTH = 240, 320
PATCH = 80  # side of the moving object (a crop of the cat photograph)


def pan_clip(frames: int = 30, zoom: float = 0.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return frames (RGB uint8) and the moving object's ground-truth mask on each.

    `zoom` > 0 zooms in: the first frame sees (1 + zoom) times more of the photo than the last.
    """
    background = skimage.data.astronaut()
    cat = skimage.data.chelsea()[40:40 + PATCH, 150:150 + PATCH]
    images, truths = [], []
    for t in range(frames):
        scale = 1 + zoom * (1 - t / max(frames - 1, 1))
        window_w, window_h = round(WIDTH * scale), round(HEIGHT * scale)
        x0 = (4 * t) % (background.shape[1] - window_w)
        frame = background[100:100 + window_h, x0:x0 + window_w]
        if (window_w, window_h) != (WIDTH, HEIGHT):
            frame = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        frame = frame.copy()
        ox, oy = 20 + 6 * t % (WIDTH - PATCH - 20), 60 + 2 * t % (HEIGHT - PATCH - 60)
        frame[oy:oy + PATCH, ox:ox + PATCH] = cat
        truth = np.zeros((HEIGHT, WIDTH), bool)
        truth[oy:oy + PATCH, ox:ox + PATCH] = True
        images.append(np.ascontiguousarray(frame))
        truths.append(truth)
    return images, truths


def object_box(truth: np.ndarray) -> np.ndarray:
    """Return the tight [x_min, y_min, x_max, y_max] box of a mask."""
    ys, xs = np.nonzero(truth)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
