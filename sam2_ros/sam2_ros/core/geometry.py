"""Masks in metres: depth scaling, registration between image sizes, robust 3D extent, point clouds.

Pure numpy and OpenCV, no ROS, so every formula is tested against closed-form scenes. Frames
follow REP 103/118: optical frame x right, y down, z forward; depth in metres, where 0, NaN and
inf mean "no reading".
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

MAD_TO_SIGMA = 1.4826  # median absolute deviation of a normal distribution, in standard deviations
ROBUST_SAMPLE = 8192  # about this many readings estimate the median and its absolute deviation


class DepthError(ValueError):
    """A depth image or camera model that cannot give metres."""


@dataclass(frozen=True)
class Intrinsics:
    """A rectified pinhole camera of one image size (from CameraInfo's P, or K)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, width: int, height: int) -> Intrinsics:
        """Read fx, fy, cx, cy from a 3x3 K or 3x4 P; refuse an unset or degenerate one."""
        m = np.asarray(matrix, np.float64).reshape(3, -1)
        fx, fy, cx, cy = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
        if not (fx > 0 and fy > 0 and width > 0 and height > 0) or not np.isfinite([fx, fy, cx, cy]).all():
            raise DepthError(f"camera model unusable: fx {fx}, fy {fy}, cx {cx}, cy {cy}, {width}x{height} "
                             "(focal lengths and size must be positive, all finite: is camera_info set?)")
        return cls(float(fx), float(fy), float(cx), float(cy), int(width), int(height))


DEPTH_UNITS = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}  # metres per stored unit (REP 118)


def depth_in_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Return float32 metres with NaN where there is no reading (REP 118: 16UC1 mm, 32FC1 m)."""
    unit = _unit(encoding)
    if unit != 1.0:  # whole millimetres, 0 = no reading
        metres = depth.astype(np.float32) * np.float32(unit)
        metres[depth == 0] = np.nan
        return metres
    metres = depth.astype(np.float32, copy=True)
    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def _unit(encoding: str) -> float:
    if encoding not in DEPTH_UNITS:
        raise DepthError(f"depth encoding '{encoding}' is not supported: use 16UC1 (millimetres) or 32FC1 (metres)")
    return DEPTH_UNITS[encoding]


class DepthImage:
    """A depth image as it arrived, in metres only where it is read (`depth[y0:y1, x0:x1]`).

    Objects cover a small part of a frame: converting the whole image to metres for every
    frame cost more than all the objects' 3D together.
    """

    def __init__(self, stored: np.ndarray, encoding: str):
        _unit(encoding)  # an encoding without metres is refused when the frame is paired
        self.stored, self.encoding = stored, encoding

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stored.shape

    def __getitem__(self, block) -> np.ndarray:
        """Return float32 metres of a block, NaN where there is no reading."""
        return depth_in_metres(self.stored[block], self.encoding)


@dataclass(frozen=True)
class Registration:
    """Which colour pixel each depth pixel sees (-1: outside the colour image), per row and column.

    Both images are rectified and registered (same optical centre and axes), so the mapping is
    separable: a depth column's ray crosses one colour column, whatever the row.
    """

    rows: np.ndarray  # (depth height,) colour row of each depth row
    cols: np.ndarray  # (depth width,) colour column of each depth column
    identity: bool  # the same grid: each depth pixel is the colour pixel of its index


@functools.lru_cache(maxsize=8)
def register(colour: Intrinsics, depth: Intrinsics) -> Registration:
    """Map the depth image's pixel grid onto the colour image's (nearest pixel centre).

    Kept for the last few camera pairs: cameras keep their models, and every frame is paired.
    """
    def axis(n_depth, c_depth, f_depth, c_colour, f_colour, n_colour):
        index = np.rint(c_colour + (np.arange(n_depth) - c_depth) * (f_colour / f_depth)).astype(np.int64)
        index[(index < 0) | (index >= n_colour)] = -1
        index.flags.writeable = False  # shared by every frame of these cameras
        return index
    rows = axis(depth.height, depth.cy, depth.fy, colour.cy, colour.fy, colour.height)
    cols = axis(depth.width, depth.cx, depth.fx, colour.cx, colour.fx, colour.width)
    same = (depth.height, depth.width) == (colour.height, colour.width) \
        and np.array_equal(rows, np.arange(len(rows))) and np.array_equal(cols, np.arange(len(cols)))
    return Registration(rows=rows, cols=cols, identity=same)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Return the mask's bounding box as x0, y0, x1, y1 (all 0 when empty); OpenCV's, fast."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    return x, y, x + w, y + h


def _span(index: np.ndarray, low: int, high: int) -> tuple[int, int]:
    """Return the first and one-past-last depth index whose colour index lies in [low, high)."""
    inside = np.flatnonzero((index >= low) & (index < high))
    return (int(inside[0]), int(inside[-1]) + 1) if len(inside) else (0, 0)


def mask_on_depth(mask: np.ndarray, registration: Registration) -> np.ndarray:
    """Resample a colour-image mask onto the depth grid; depth pixels outside the colour image are False.

    Only the depth block under the mask's box is looked up: the cost follows the object's size.
    """
    if registration.identity:
        return mask
    rows, cols = registration.rows, registration.cols
    x0, y0, x1, y1 = _box(mask)
    (r0, r1), (c0, c1) = _span(rows, y0, y1), _span(cols, x0, x1)
    on_depth = np.zeros((len(rows), len(cols)), bool)
    on_depth[r0:r1, c0:c1] = mask[np.ix_(rows[r0:r1], cols[c0:c1])]
    return on_depth


@dataclass(frozen=True)
class Object3D:
    """An object's points and their extent in the depth camera's optical frame, metres."""

    coordinates: tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, z of the N inlier points, float32
    centroid: np.ndarray  # (3,) mean of the points
    minimum: np.ndarray  # (3,) axis-aligned extent
    maximum: np.ndarray  # (3,)
    _origin: tuple[int, int]  # (row, column) of the block the selection below covers
    _kept: np.ndarray  # (h, w) bool: the readings used (eroded mask, valid, not outliers), in that block

    @property
    def count(self) -> int:
        return len(self.coordinates[2])

    @property
    def points(self) -> np.ndarray:
        """Return the (N, 3) float32 points (built on demand: the cloud needs them, the extent does not).

        Stored axis by axis (column-major), the layout voxel_downsample reduces over without a copy.
        """
        return np.stack(self.coordinates).T

    def colours(self, rgb: np.ndarray, registration: Registration) -> np.ndarray:
        """Return the (N, 3) colour of each point: the colour pixel its depth pixel sees (for the cloud)."""
        (row, column), (height, width) = self._origin, self._kept.shape
        # one 3-byte item per pixel: selecting whole pixels is ten times faster than (h, w, 3)[kept]
        pixels = np.ascontiguousarray(rgb).view(np.dtype((np.void, 3))).reshape(rgb.shape[:2])
        if registration.identity:
            block = pixels[row:row + height, column:column + width]
        else:  # a kept pixel never lies outside the colour image
            block = pixels[np.ix_(registration.rows[row:row + height], registration.cols[column:column + width])]
        return block[self._kept].view(np.uint8).reshape(-1, 3)


def object_3d(mask: np.ndarray, depth_m: np.ndarray | DepthImage, intrinsics: Intrinsics, erode_px: int = 2,
              outlier_sigmas: float = 3.0, min_band_m: float = 0.01, min_pixels: int = 10,
              box: tuple[int, int, int, int] | None = None) -> Object3D | None:
    """Back-project an object's depth pixels, robust to what depth does at borders; None without enough.

    The mask (on the depth grid) is eroded by `erode_px` first: depth at an object's edge mixes
    it with the background ("flying pixels"). Readings further than `outlier_sigmas` robust
    standard deviations (median absolute deviation) from the median depth, and never closer
    than `min_band_m`, are dropped as the background seen through a mask's slack. Work is done
    on the block around the mask, with boolean selections rather than index arrays; `box` (x, y,
    width, height), when the mask's is known already, spares a pass over the whole image.
    """
    x0, y0, x1, y1 = _box(mask) if box is None else (box[0], box[1], box[0] + box[2], box[1] + box[3])
    height, width = mask.shape
    # a margin of erode_px keeps erosion at the block's edge as it is on the whole image
    y0, x0, y1, x1 = max(y0 - erode_px, 0), max(x0 - erode_px, 0), min(y1 + erode_px, height), min(x1 + erode_px, width)
    block, z_block = mask[y0:y1, x0:x1], depth_m[y0:y1, x0:x1]
    if erode_px > 0 and block.size:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
        eroded = cv2.erode(block.view(np.uint8), kernel).view(bool)
        if eroded.any():  # a sliver thinner than the erosion keeps its pixels
            block = eroded
    step = max(1, int(np.sqrt(block.size / ROBUST_SAMPLE)))  # median and MAD from an even subsample
    sample = z_block[::step, ::step][block[::step, ::step]]
    if step > 1 and np.count_nonzero(np.isfinite(sample)) < min_pixels:  # thin objects slip through a grid
        sample = z_block[block]
    sample = sample[np.isfinite(sample)]
    if len(sample) < min_pixels:
        return None
    median = np.median(sample)
    spread = np.median(np.abs(sample - median)) * MAD_TO_SIGMA
    with np.errstate(invalid="ignore"):  # NaN (no reading) is never within the band
        kept = block & (np.abs(z_block - median) <= max(outlier_sigmas * spread, min_band_m))
    z = z_block[kept]
    if len(z) < min_pixels:
        return None
    across = ((np.arange(x0, x1, dtype=np.float32) - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx))
    down = ((np.arange(y0, y1, dtype=np.float32) - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy))
    xyz = (np.broadcast_to(across, block.shape)[kept] * z, np.broadcast_to(down[:, None], block.shape)[kept] * z, z)
    # one contiguous array per axis: column reductions over an (N, 3) array are ten times slower
    return Object3D(coordinates=xyz, centroid=np.array([c.mean(dtype=np.float64) for c in xyz]),
                    minimum=np.array([c.min() for c in xyz]), maximum=np.array([c.max() for c in xyz]),
                    _origin=(y0, x0), _kept=kept)


def voxel_downsample(points: np.ndarray, ids: np.ndarray, voxel: float,
                     colours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Average the points of each object within each cube of side `voxel` metres (0: keep all).

    Objects never share a voxel's point: the key is (object id, voxel), so a cloud can be split
    by id again. Returns points (float32), ids and mean colours (uint8) in voxel order.
    """
    if voxel <= 0 or not len(points):
        return points, ids, colours
    axes = np.ascontiguousarray(points.T)  # reductions along contiguous rows: ten times faster than columns
    cells = np.floor(axes / voxel).astype(np.int64)
    cells -= cells.min(axis=1, keepdims=True)
    spans = cells.max(axis=1) + 1
    first_id = int(ids.min())
    space = float(np.prod(spans.astype(np.float64))) * (float(ids.max()) - first_id + 1)
    if space < 2.0**62:
        # (id, x, y, z) packed into one int64 in their lexicographic order
        keys = (((ids.astype(np.int64) - first_id) * spans[0] + cells[0]) * spans[1] + cells[1]) * spans[2] + cells[2]
        if space <= max(4 * len(keys), 1 << 20):  # objects a few voxels across: count into every key, no sort
            counts = np.bincount(keys, minlength=int(space))
            unique = np.flatnonzero(counts)
            order = np.empty(len(counts), np.int64)  # key -> its voxel's index, set for the keys present
            order[unique] = np.arange(len(unique))
            inverse, counts = order[keys], counts[unique]
        else:
            unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        unique_ids = unique // int(np.prod(spans)) + first_id
    else:  # voxels so small that the packed key would overflow
        unique, inverse, counts = np.unique(np.column_stack([ids.astype(np.int64), cells.T]), axis=0,
                                            return_inverse=True, return_counts=True)
        unique_ids = unique[:, 0]
    inverse = inverse.reshape(-1)

    def mean(rows: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(inverse, row, len(counts)) / counts for row in rows], axis=1)
    averaged_colours = None if colours is None else np.rint(mean(colours.T)).astype(np.uint8)
    return mean(axes).astype(np.float32), unique_ids.astype(ids.dtype), averaged_colours


def cloud_array(points: np.ndarray, ids: np.ndarray, colours: np.ndarray | None = None) -> np.ndarray:
    """Pack points as PointCloud2 lays them out: x y z float32, object_id uint32, rgb (PCL's packed float)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("object_id", "<u4")]
    if colours is not None:
        fields.append(("rgb", "<u4"))  # 0x00RRGGBB, published as FLOAT32 bits as PCL and RViz expect
    cloud = np.empty(len(points), np.dtype(fields))
    cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
    cloud["object_id"] = ids
    if colours is not None:
        c = colours.astype(np.uint32)
        cloud["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    return cloud
