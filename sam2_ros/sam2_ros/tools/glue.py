"""sam2_bench --suite glue: the node's own cost per frame on masks shaped like real objects, the model apart.

Random weights give masks of thousands of fragments, so a node benchmark on them measures
contours of noise. Here the node's real glue runs on outlines of real objects instead: the horse
silhouette and the coins that scikit-image ships (a mask of a real object has a handful of
polygons). For each frame size and object count, one frame's result is built (contours,
boxes, crops, 3D from a registered depth image) and published with its label image, overlay,
point cloud and markers to real subscribers, through the node's own Outputs and Delivery; the
time from "SAM 2 has the masks" to "published" is the glue's.
"""
from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import cv2
import numpy as np
import psutil
import rclpy
import skimage.data
import skimage.filters
import skimage.measure
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from sam2_ros.core import settings as S
from sam2_ros.core.encoding import EncodedFrame
from sam2_ros.core.frames import RecentFrame
from sam2_ros.core.tracker import TrackedMask
from sam2_ros.ros.conversions import array_to_image
from sam2_ros.ros.delivery import Delivery
from sam2_ros.ros.depth import DepthInput
from sam2_ros.ros.diagnostics import Diagnostics
from sam2_ros.ros.outputs import Outputs
from sam2_ros.ros.process import ProcessTuning
from sam2_ros.tools.measure import camera_frame, polygons_per_object
from sam2_ros_interfaces.msg import SegmentationResult

SIZES = ((640, 480), (1280, 720), (1920, 1080))
CAMERA_PERIOD_S = 1 / 30  # frames come as a 30 Hz camera sends them
OBJECTS = (1, 3, 8)
OUTPUTS = (("result", SegmentationResult), ("mask", Image), ("overlay", Image), ("points", PointCloud2),
           ("markers", MarkerArray))
T = TypeVar("T")
LISTENER = """
import sys
import rclpy
from rclpy.executors import ExternalShutdownException
from sam2_ros.ros.outputs import RELIABLE
from sam2_ros.tools.glue import OUTPUTS
rclpy.init()
node = rclpy.create_node("sam2_output_listener")
for name, kind in OUTPUTS:  # one line per message received from the node named in argv[1]
    node.create_subscription(kind, sys.argv[1] + "/" + name, lambda _, n=name: print(n, flush=True), RELIABLE)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""


def listener(node_name: str) -> subprocess.Popen:
    """Start a process that subscribes to every output of the node `node_name` and prints each message's output.

    Unbuffered: what select() says is there is all there is (no lines held in a Python buffer).
    """
    return subprocess.Popen([sys.executable, "-c", LISTENER, node_name], stdout=subprocess.PIPE, bufsize=0,
                            env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})


def object_shapes() -> list[np.ndarray]:
    """Outlines of real objects: the horse silhouette and single coins of the coins photo (Otsu threshold)."""
    coins = skimage.data.coins()
    labels = skimage.measure.label(coins > skimage.filters.threshold_otsu(coins))
    single = [r for r in skimage.measure.regionprops(labels)  # one whole coin each
              if 1200 <= r.area <= 4000 and r.solidity > 0.9]
    shapes = [~skimage.data.horse()] + [solid(r.image) for r in sorted(single, key=lambda r: -r.area)]
    return [np.ascontiguousarray(shape) for shape in shapes]


def solid(region: np.ndarray) -> np.ndarray:
    """Return the region inside its outer boundary (a coin's dark engraving is part of the coin)."""
    outer, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(np.zeros(region.shape, np.uint8), outer, -1, 1, thickness=cv2.FILLED) > 0


def real_masks(width: int, height: int, count: int) -> list[np.ndarray]:
    """`count` masks on a width x height frame: object k fills 70 % of cell k of a 4 x 2 grid."""
    shapes, masks = object_shapes(), []
    cell_w, cell_h = width // 4, height // 2
    for k in range(count):
        shape = shapes[k % len(shapes)]
        scale = 0.7 * min(cell_w / shape.shape[1], cell_h / shape.shape[0])
        w, h = max(1, round(shape.shape[1] * scale)), max(1, round(shape.shape[0] * scale))
        resized = cv2.resize(shape.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 127
        x, y = (k % 4) * cell_w + (cell_w - w) // 2, (k // 4 % 2) * cell_h + (cell_h - h) // 2
        mask = np.zeros((height, width), bool)
        mask[y:y + h, x:x + w] = resized
        masks.append(mask)
    return masks


def depth_of(masks: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """16UC1 millimetres: a wall at 3 m, object k at 1 m + 10 cm * k."""
    depth = np.full((height, width), 3000, np.uint16)
    for k, mask in enumerate(masks):
        depth[mask] = 1000 + 100 * k
    return depth


@dataclass(frozen=True)
class GlueScene:
    """One frame as the camera and SAM 2 hand it over: the photo, the objects' masks, the depth image's bytes.

    The depth bytes are made once per scene: drawing them is the camera's work, not the node's,
    and would count in the process's CPU per frame.
    """

    rgb: np.ndarray
    masks: list[np.ndarray]
    depth: Image  # 16UC1, unstamped

    @classmethod
    def of(cls, width: int, height: int, count: int) -> GlueScene:
        masks = real_masks(width, height, count)
        depth = array_to_image(depth_of(masks, height, width), "16UC1", Header())
        return cls(camera_frame(height, width), masks, depth)

    def depth_image(self, header: Header) -> Image:
        """Return the depth frame stamped like the colour frame (its bytes shared, not copied)."""
        d = self.depth
        return Image(header=header, height=d.height, width=d.width, encoding=d.encoding, is_bigendian=d.is_bigendian,
                     step=d.step, data=d.data)


def camera_info(width: int, height: int, header: Header) -> CameraInfo:
    focal = width / (2 * np.tan(np.radians(35)))  # a 70-degree horizontal field of view
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return CameraInfo(header=header, width=width, height=height, k=[focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0],
                      p=[focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


class GlueRig:
    """The node's outputs, depth pairing and delivery on a plain rclpy node; a listener process on every output.

    The listener is another process, as RViz and a robot's other nodes are: receiving megabytes
    of images in this process would take the glue's own cores and GIL.
    """

    def __init__(self):
        self.config = S.NodeConfig().changed(depth=True)
        self.node = rclpy.create_node("sam2_glue_bench")
        self.outputs = Outputs(self.node, self.config)
        self.depth = DepthInput()
        self.delivery = Delivery(self.node, self.outputs, self.depth, Diagnostics(self.node))
        self.listener = listener("/sam2_glue_bench")
        deadline = time.monotonic() + 60
        while not all(self.outputs.subscribers(name) for name, _ in OUTPUTS):
            if time.monotonic() > deadline or self.listener.poll() is not None:
                self.close()
                raise RuntimeError("the glue's listener process never subscribed to every output")
            time.sleep(0.05)
        self.delivery.start()
        self._seq = 0
        self._handshake(deadline)

    def _handshake(self, deadline: float) -> None:
        """Send small frames until the listener has had every output, then drop what it printed.

        That the publishers see its subscriptions is half of discovery: until its readers have
        matched the publishers too, what is sent to them is lost (volatile, reliable).
        """
        small = GlueScene.of(160, 120, 1)
        while min(self.received(timeout=0.5).values()) == 0:
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the glue's listener process never received every output")
            self.frame(small)
        while select.select([self.listener.stdout], [], [], 0.5)[0]:
            self.listener.stdout.readline()

    def frame(self, scene: GlueScene) -> tuple[float, SegmentationResult]:
        """Publish one frame's outputs for the scene's masks; the glue's milliseconds and the result."""
        self._seq += 1
        height, width = scene.rgb.shape[:2]
        header = Header(frame_id="camera_optical")
        header.stamp.sec = self._seq
        stamp = self._seq * 10**9
        self.depth.set_colour_info(camera_info(width, height, header))
        self.depth.add_depth(scene.depth_image(header))
        objects = [TrackedMask(k + 1, f"object {k + 1}", mask, 0.9, 0.99, np.zeros((1, 1, 1), np.float32))
                   for k, mask in enumerate(scene.masks)]
        frame = RecentFrame(seq=self._seq, stamp_ns=stamp, header=header, rgb=scene.rgb,
                            encoded=EncodedFrame((height, width), None, 0.0), tracker_index=None)
        start = time.perf_counter()  # SAM 2 has handed over the frame's masks
        builder = self.outputs.builder(header, (height, width), self.config,
                                       self.delivery.scene_now(stamp, (height, width), self.config))
        for obj in objects:
            builder.add(obj)
        result = self.delivery.send(frame, objects, self.config, builder, model_ms=0.0).result()
        return (time.perf_counter() - start) * 1e3, result

    def received(self, timeout: float = 10.0) -> dict[str, int]:
        """Read what the listener received until every output came once (or `timeout`): output -> messages."""
        counts = {name: 0 for name, _ in OUTPUTS}
        deadline = time.monotonic() + timeout
        while min(counts.values()) == 0 and time.monotonic() < deadline:
            ready, _, _ = select.select([self.listener.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                name = self.listener.stdout.readline().decode().strip()
                counts[name] = counts.get(name, 0) + 1
        return counts

    def close(self) -> None:
        if self.listener.poll() is None:
            self.listener.kill()
            self.listener.wait()
        self.delivery.stop()
        self.outputs.close()
        self.node.destroy_node()


def at_camera_rate(step: Callable[[], T], frames: int, period_s: float = CAMERA_PERIOD_S) -> list[T]:
    """Call `step` `frames` times, one call a period as camera frames come (at once after one that overran)."""
    done, due = [], time.monotonic()
    for _ in range(frames):
        time.sleep(max(0.0, due - time.monotonic()))
        due = max(due, time.monotonic()) + period_s
        done.append(step())
    return done


def cpu_ms(process: psutil.Process) -> float:
    """Return the CPU milliseconds a process has used so far, all its threads, user and kernel.

    Counted in the kernel's ticks (10 ms): over 30 frames, a frame's share is known to 0.3 ms.
    """
    times = process.cpu_times()
    return (times.user + times.system) * 1e3


def bench_glue(frames: int) -> dict:
    """glue_ms_p50_<n>obj_<W>x<H>: the node's time per frame after SAM 2 (and polygons per object).

    Beside it, the CPU each frame costs the node's side (all its threads, DDS's included) and the
    listener: on a robot both share the cores with everything else it runs.

    Frames come at 30 Hz, as from a camera (sent back to back, each frame's glue would share the
    two cores with the listener still taking in the last frame's images). The process is tuned as
    main() tunes the node's (GIL switch interval, start-up objects frozen out of the collector):
    measured without it, collections and 5 ms GIL turns are a third of it.
    """
    results: dict = {}
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    try:
        with ProcessTuning() as tuning:
            tuning.model_loaded()
            rig = GlueRig()
            try:
                node, viewer = psutil.Process(), psutil.Process(rig.listener.pid)
                for width, height in SIZES:
                    for count in OBJECTS:
                        scene = GlueScene.of(width, height, count)
                        rig.frame(scene)  # warm-up: the pool's threads, the publishers' buffers
                        node_start, viewer_start = cpu_ms(node), cpu_ms(viewer)
                        runs = at_camera_rate(lambda: rig.frame(scene), frames)
                        tag = f"{count}obj_{width}x{height}"
                        results[f"glue_cpu_ms_per_frame_{tag}"] = (cpu_ms(node) - node_start) / frames
                        results[f"glue_listener_cpu_ms_per_frame_{tag}"] = (cpu_ms(viewer) - viewer_start) / frames
                        results[f"glue_ms_p50_{tag}"] = statistics.median(ms for ms, _ in runs)
                        results[f"glue_polygons_per_object_{tag}"] = polygons_per_object(runs[-1][1])
                        results[f"glue_objects_with_3d_{tag}"] = sum(o.has_3d for o in runs[-1][1].objects)
            finally:
                rig.close()
    finally:
        if own_context:
            rclpy.shutdown()
    return results
