"""Synthetic video with known motion: a camera panning over a real photo, an object moving over it."""
import numpy as np
import skimage.data

HEIGHT, WIDTH = 240, 320
PATCH = 80  # side of the moving object (a crop of the cat photograph)


def pan_clip(frames: int = 30) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames (RGB uint8) and the moving object's ground-truth mask on each."""
    background = skimage.data.astronaut()
    cat = skimage.data.chelsea()[40:40 + PATCH, 150:150 + PATCH]
    images, truths = [], []
    for t in range(frames):
        x0 = (4 * t) % (background.shape[1] - WIDTH)
        frame = background[100:100 + HEIGHT, x0:x0 + WIDTH].copy()
        ox, oy = 20 + 6 * t % (WIDTH - PATCH - 20), 60 + 2 * t % (HEIGHT - PATCH - 60)
        frame[oy:oy + PATCH, ox:ox + PATCH] = cat
        truth = np.zeros((HEIGHT, WIDTH), bool)
        truth[oy:oy + PATCH, ox:ox + PATCH] = True
        images.append(np.ascontiguousarray(frame))
        truths.append(truth)
    return images, truths


def object_box(truth: np.ndarray) -> np.ndarray:
    """Tight [x_min, y_min, x_max, y_max] box of a mask."""
    ys, xs = np.nonzero(truth)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
