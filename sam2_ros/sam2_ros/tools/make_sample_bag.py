"""sam2_make_sample_bag: a short camera stream from real photographs, with a prompt and ground truth.

Topics: /camera/image_raw (rgb8; with --compressed, /camera/image_raw/compressed as lossless png
instead, as image_transport names it), /camera/camera_info, a registered depth stream as a
RealSense names it (/camera/aligned_depth_to_color/image_raw, 16UC1 millimetres, and its
camera_info), /sam2/prompt (a box around the moving object on the first frame, object id 1),
/ground_truth/mask (mono8, 1 = the object) and /ground_truth/centroid (geometry_msgs/PointStamped:
the object's true 3D centroid; the object is a flat square facing the camera, 1.0 m to 1.5 m away,
in front of a wall at 3 m).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from sam2_ros.tools.bags import BagError, typestore, writer
from sam2_ros.tools.scenes import object_box, pan_clip

IMAGE_TOPIC, INFO_TOPIC = "/camera/image_raw", "/camera/camera_info"
COMPRESSED_TOPIC = IMAGE_TOPIC + "/compressed"
DEPTH_TOPIC, DEPTH_INFO_TOPIC = "/camera/aligned_depth_to_color/image_raw", "/camera/aligned_depth_to_color/camera_info"
CENTROID_TOPIC = "/ground_truth/centroid"
WALL_M = 3.0  # the photograph hangs on a wall facing the camera


def object_distance(t: int, frames: int) -> float:
    """Return the moving object's distance (metres): from 1.0 m on the first frame to 1.5 m on the last."""
    return 1.0 + 0.5 * t / max(frames - 1, 1)
PROMPT_TOPIC, TRUTH_TOPIC = "/sam2/prompt", "/ground_truth/mask"
FRAME_ID = "camera_color_optical_frame"
START_NS = 1_700_000_000 * 10**9


def make_sample_bag(path: Path, frames: int = 30, rate_hz: float = 10.0, storage: str = "mcap",
                    zoom: float = 0.3, compressed: bool = False) -> Path:
    """Write the bag; return its path. Bad arguments are refused before anything is written."""
    if frames < 1:
        raise BagError(f"--frames must be at least 1, got {frames}")
    if not rate_hz > 0:
        raise BagError(f"--rate must be positive, got {rate_hz}")
    if not zoom >= 0:
        raise BagError(f"--zoom must be 0 or more, got {zoom}")
    store = typestore()
    T = store.types
    images, truths = pan_clip(frames, zoom=zoom)
    height, width = truths[0].shape

    def header(ns: int):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                        frame_id=FRAME_ID)

    def image(array: np.ndarray, encoding: str, ns: int):
        channels = 1 if array.ndim == 2 else array.shape[2]
        return T["sensor_msgs/msg/Image"](header=header(ns), height=height, width=width, encoding=encoding,
                                          is_bigendian=0, step=width * channels * array.itemsize,
                                          data=np.ascontiguousarray(array).view(np.uint8).reshape(-1))

    focal = width / 2 / np.tan(np.radians(30))
    info = T["sensor_msgs/msg/CameraInfo"](
        header=header(START_NS), height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([focal, 0, width / 2, 0, focal, height / 2, 0, 0, 1], float),
        r=np.eye(3).reshape(-1), p=np.array([focal, 0, width / 2, 0, 0, focal, height / 2, 0, 0, 0, 1, 0], float),
        binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    def png(rgb: np.ndarray, ns: int):
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return T["sensor_msgs/msg/CompressedImage"](header=header(ns), format="rgb8; png compressed bgr8",
                                                    data=data.reshape(-1))

    camera_topic, camera_type = ((COMPRESSED_TOPIC, "sensor_msgs/msg/CompressedImage") if compressed
                                 else (IMAGE_TOPIC, "sensor_msgs/msg/Image"))
    empty = T["sensor_msgs/msg/Image"](header=header(0), height=0, width=0, encoding="", is_bigendian=0,
                                       step=0, data=np.zeros(0, np.uint8))
    prompt = T["sam2_ros_interfaces/msg/Prompt"](
        header=header(START_NS), object_id=1, label="cat", points=[], point_labels=np.zeros(0, np.uint8),
        box=object_box(truths[0]), mask=empty, text="")
    with writer(path, storage) as bag:
        topics = {topic: bag.add_connection(topic, msgtype, typestore=store) for topic, msgtype in (
            (camera_topic, camera_type), (INFO_TOPIC, "sensor_msgs/msg/CameraInfo"),
            (DEPTH_TOPIC, "sensor_msgs/msg/Image"), (DEPTH_INFO_TOPIC, "sensor_msgs/msg/CameraInfo"),
            (PROMPT_TOPIC, "sam2_ros_interfaces/msg/Prompt"), (TRUTH_TOPIC, "sensor_msgs/msg/Image"),
            (CENTROID_TOPIC, "geometry_msgs/msg/PointStamped"))}

        def write(topic: str, ns: int, msg, msgtype: str) -> None:
            bag.write(topics[topic], ns, store.serialize_cdr(msg, msgtype))

        for t, (rgb, truth) in enumerate(zip(images, truths)):
            ns = START_NS + round(t * 1e9 / rate_hz)
            info.header = header(ns)
            z = object_distance(t, frames)
            depth = np.full((height, width), round(WALL_M * 1000), np.uint16)
            depth[truth] = round(z * 1000)
            rows, cols = np.nonzero(truth)  # a flat square facing the camera: its centre, at distance z
            centroid = T["geometry_msgs/msg/Point"](x=(cols.mean() - width / 2) * z / focal,
                                                    y=(rows.mean() - height / 2) * z / focal, z=z)
            # camera models and depth first (1 us earlier in the log): a replayed frame finds them there
            write(INFO_TOPIC, ns - 1000, info, "sensor_msgs/msg/CameraInfo")
            write(DEPTH_INFO_TOPIC, ns - 1000, info, "sensor_msgs/msg/CameraInfo")
            write(DEPTH_TOPIC, ns - 1000, image(depth, "16UC1", ns), "sensor_msgs/msg/Image")
            write(CENTROID_TOPIC, ns, T["geometry_msgs/msg/PointStamped"](header=header(ns), point=centroid),
                  "geometry_msgs/msg/PointStamped")
            write(camera_topic, ns, png(rgb, ns) if compressed else image(rgb, "rgb8", ns), camera_type)
            write(TRUTH_TOPIC, ns, image(truth.astype(np.uint8), "mono8", ns), "sensor_msgs/msg/Image")
            if t == 0:  # after its frame: a prompt refers to a frame the node has seen
                write(PROMPT_TOPIC, ns + 1, prompt, "sam2_ros_interfaces/msg/Prompt")
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: sam2_make_sample_bag OUT [--frames N] [--storage mcap|sqlite3] [--compressed]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="bag folder to create")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate, Hz")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--compressed", action="store_true",
                        help=f"write the camera as png CompressedImage on {COMPRESSED_TOPIC}")
    parser.add_argument("--zoom", type=float, default=0.3, help="how much the camera zooms in over the clip")
    args = parser.parse_args(argv)
    try:
        make_sample_bag(args.out, args.frames, args.rate, args.storage, args.zoom, args.compressed)
    except BagError as error:
        print(f"sam2_make_sample_bag: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.frames} frames to {args.out} ({args.storage})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
