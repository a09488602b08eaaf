"""Core results -> SegmentationResult, label image and overlay messages."""
from __future__ import annotations

from array import array
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import Callable, Protocol, Sequence

import numpy as np
from geometry_msgs.msg import Point, Point32
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from sam2_ros.core.contours import Contour, MaskGeometry, describe
from sam2_ros.core.frames import FrameMismatch
from sam2_ros.core.geometry import Object3D, mask_on_depth, object_3d
from sam2_ros.core.render import DrawnObject, overlay
from sam2_ros.core.settings import OutputSettings, unlabelled
from sam2_ros.ros.conversions import array_to_image, image_to_draw_on
from sam2_ros.ros.depth import DepthScene
from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject


def check_objects(objects: Sequence[ObjectResult], image_hw: tuple[int, int]) -> None:
    """Every mask must be one of this frame's size before a message with its header goes out."""
    for obj in objects:
        if tuple(obj.mask.shape) != tuple(image_hw):
            raise FrameMismatch(f"object {obj.object_id} has a {obj.mask.shape[1]}x{obj.mask.shape[0]} mask "
                                f"for a {image_hw[1]}x{image_hw[0]} frame: output withheld")


class ObjectResult(Protocol):
    """What the segmenter and the tracker both return per object."""

    object_id: int
    label: str
    mask: np.ndarray
    score: float
    presence: float


def shown(obj: ObjectResult, settings: OutputSettings) -> np.ndarray:
    """Return the mask as published: empty when SAM 2 finds the object absent or scores it too low."""
    if obj.presence <= 0.5 or obj.score < settings.score_threshold:
        return np.zeros_like(obj.mask)
    return obj.mask


@dataclass(frozen=True)
class Described:
    """One object's message, its mask as published with its box and outline, its 3D once depth is paired.

    The label image and the overlay draw from it: the box and contours are found once a frame.
    """

    msg: SegmentedObject
    shown: np.ndarray
    geometry: MaskGeometry
    solid: Object3D | None = None


def segmented_object(obj: ObjectResult, settings: OutputSettings, header: Header) -> Described:
    """Build one object's message: geometry, contours, the mask cropped to its box (3D: `with_3d`)."""
    mask = shown(obj, settings)
    geometry = describe(mask, settings.contour_epsilon, settings.min_area)
    x, y, w, h = geometry.box
    msg = SegmentedObject(object_id=int(obj.object_id), label=obj.label, score=float(obj.score),
                          presence=float(obj.presence), visible=geometry.area > 0,
                          box=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
                          area=geometry.area)
    if geometry.area:
        msg.centroid = Point32(x=float(geometry.centroid[0]), y=float(geometry.centroid[1]))
        msg.mask = array_to_image(mask[y:y + h, x:x + w].astype(np.uint8) * np.uint8(255), "mono8", header)
    msg.contour_points, msg.contour_lengths, msg.contour_parents = pack_contours(geometry.contours)
    return Described(msg, mask, geometry)


def with_3d(described: Described, scene: DepthScene, settings: OutputSettings) -> Described:
    """Add the object's 3D from a paired depth frame (none when too few valid readings fall on it)."""
    msg = described.msg
    if not msg.visible:
        return described
    same_grid = scene.registration.identity  # the mask's box found by describe() is its box on depth too
    solid = object_3d(mask_on_depth(described.shown, scene.registration), scene.depth, scene.intrinsics,
                      settings.depth_erode_px, min_pixels=settings.depth_min_pixels,
                      box=described.geometry.box if same_grid else None)
    if solid is None:
        return described
    msg.has_3d, msg.depth_pixels = True, solid.count
    msg.centroid_3d, msg.min_3d, msg.max_3d = (Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))
                                               for v in (solid.centroid, solid.minimum, solid.maximum))
    return replace(described, solid=solid)


def pack_contours(contours: Sequence[Contour]) -> tuple[array, array, array]:
    """Return the flat vertex, length and parent arrays of SegmentedObject."""
    points = np.concatenate([c.points.reshape(-1) for c in contours]) if contours else np.zeros(0)
    return (array("f", points.astype(np.float32, copy=False).tobytes()),
            array("I", [len(c.points) for c in contours]), array("i", [c.parent for c in contours]))


def unpack_contours(msg: SegmentedObject) -> list[Contour]:
    """Return an object message's polygons as the core's Contour list (for Python consumers)."""
    points = np.asarray(msg.contour_points, np.float32).reshape(-1, 2)
    ends = np.cumsum(np.asarray(msg.contour_lengths, np.int64))
    if len(msg.contour_parents) != len(ends) or (len(ends) and ends[-1] != len(points)):
        raise ValueError(f"contour arrays disagree: {len(points)} vertices, lengths summing to "
                         f"{ends[-1] if len(ends) else 0}, {len(msg.contour_parents)} parents")
    return [Contour(points=polygon, is_hole=parent >= 0, parent=int(parent))
            for polygon, parent in zip(np.split(points, ends[:-1]), msg.contour_parents)]


def described(obj: ObjectResult, settings: OutputSettings, header: Header, scene: DepthScene | None) -> Described:
    """Describe one object, with its 3D when the depth frame is already known."""
    done = segmented_object(obj, settings, header)
    return done if scene is None else with_3d(done, scene, settings)


class ResultBuilder:
    """Describe each object on a pool thread as soon as its mask exists, then assemble the frame.

    The tracker hands objects over one by one, so contours of the first objects are worked out
    while SAM 2 still works on the later ones; OpenCV's contour and moment code releases the
    GIL. 3D goes with them when the frame's depth is already there (`scene`), else it is added
    at `build`, once a depth frame is paired (it may arrive after the model is done). Without a
    pool (the owner's, e.g. the node's) objects are described in the calling thread.
    """

    def __init__(self, header: Header, image_hw: tuple[int, int], settings: OutputSettings,
                 pool: Executor | None = None, scene: DepthScene | None = None):
        self.header, self.image_hw, self.settings, self._pool = header, image_hw, settings, pool
        self.scene = scene  # the depth frame paired before the objects came, if any
        self._described: dict[int, tuple[ObjectResult, Future]] = {}
        self.described: list[Described] = []  # the last result's objects, ascending ids
        self.solids: dict[int, Object3D] = {}

    def _run(self, function: Callable, *args) -> Future:
        if self._pool is not None:
            return self._pool.submit(function, *args)
        future = Future()
        future.set_result(function(*args))
        return future

    def add(self, obj: ObjectResult) -> None:
        """Start describing one object."""
        self._described[obj.object_id] = (obj, self._run(described, obj, self.settings, self.header, self.scene))

    def build(self, objects: Sequence[ObjectResult], scene: DepthScene | None = None,
              **timings: float) -> SegmentationResult:
        """Return the result of these objects (added or not yet), with the source header unchanged.

        With `scene` (the depth frame paired with this colour frame) each object gets its 3D,
        unless the builder was given its scene at the start (then `scene` is ignored).
        """
        early = self.scene is not None
        scene = self.scene if early else scene
        check_objects(objects, self.image_hw)
        for obj in objects:
            if self._described.get(obj.object_id, (None,))[0] is not obj:
                self.add(obj)
        ordered = sorted(objects, key=lambda obj: obj.object_id)  # SegmentationResult.msg: ascending ids
        described = [self._described[obj.object_id][1].result() for obj in ordered]
        if scene is not None and not early:
            described = [f.result() for f in [self._run(with_3d, d, scene, self.settings) for d in described]]
        self.described = described
        self.solids = {d.msg.object_id: d.solid for d in described if d.solid is not None}
        result = SegmentationResult(header=self.header, height=self.image_hw[0], width=self.image_hw[1],
                                    objects=[d.msg for d in described], **timings)
        if scene is not None:
            result.depth_header = scene.header
        return result


def result_message(objects: Sequence[ObjectResult], header: Header, image_hw: tuple[int, int],
                   settings: OutputSettings, pool: Executor | None = None, **timings: float) -> SegmentationResult:
    """Build the result of one frame, with the source image's header unchanged."""
    return ResultBuilder(header, image_hw, settings, pool).build(objects, **timings)


def label_image(described: Sequence[Described], header: Header, image_hw: tuple[int, int],
                settings: OutputSettings) -> Image:
    """Build the label image: pixel = object id (0 background); a higher score wins overlaps.

    Each mask is written within its box only: the cost follows the objects' size, not the frame's.
    """
    dtype = np.uint8 if settings.mask_encoding == "mono8" else np.uint16
    too_big = unlabelled((d.msg.object_id for d in described), settings.mask_encoding)
    if too_big:
        raise FrameMismatch(f"object ids {too_big} do not fit a {settings.mask_encoding} label image")
    labels = np.zeros(image_hw, dtype)
    for done in sorted(described, key=lambda d: d.msg.score):
        x, y, w, h = done.geometry.box
        labels[y:y + h, x:x + w][done.shown[y:y + h, x:x + w]] = done.msg.object_id
    return array_to_image(labels, settings.mask_encoding, header)


def overlay_image(rgb: np.ndarray, described: Sequence[Described], header: Header) -> Image:
    """Draw every visible mask on the camera image, for RViz, with the outlines the result carries."""
    drawn = [DrawnObject(d.msg.object_id, d.shown, d.msg.label, d.geometry.box,
                         [c.points.astype(np.int32) for c in d.geometry.contours]) for d in described]
    msg, canvas = image_to_draw_on(rgb, "rgb8", header)  # drawn where it is sent from: no copy once drawn
    overlay(rgb, drawn, canvas=canvas)
    return msg
