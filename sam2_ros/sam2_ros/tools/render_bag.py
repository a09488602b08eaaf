"""sam2_render: an output bag of sam2_replay -> overlay video (mp4) and contact sheet (png)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import CompressedImage, Image

from sam2_ros.core.render import DrawnObject, overlay
from sam2_ros.ros.conversions import compressed_to_rgb, image_to_array, image_to_rgb
from sam2_ros.ros.prompt_msgs import stamp_ns
from sam2_ros.tools.bags import BagError
from sam2_ros_interfaces.msg import SegmentationResult


def read_frames(bag: Path, image_topic: str, node_name: str) -> list[np.ndarray]:
    """Draw the node's masks on every camera frame of the bag, in stamp order."""
    frames, labels, names = {}, {}, {}
    try:
        with Reader(bag) as reader:
            topics = {c.topic for c in reader.connections}
            for needed in (image_topic, f"{node_name}/mask"):
                if needed not in topics:
                    raise BagError(f"topic '{needed}' is not in {bag}; it has: {', '.join(sorted(topics))}")
            for connection, _, raw in reader.messages():
                if connection.topic == image_topic:
                    compressed = connection.msgtype.endswith("CompressedImage")
                    msg = deserialize_message(raw, CompressedImage if compressed else Image)
                    frames[stamp_ns(msg.header)] = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
                elif connection.topic == f"{node_name}/mask":
                    msg = deserialize_message(raw, Image)
                    labels[stamp_ns(msg.header)] = image_to_array(msg)
                elif connection.topic == f"{node_name}/result":
                    msg = deserialize_message(raw, SegmentationResult)
                    names.update({o.object_id: o.label for o in msg.objects})
    except BagError:
        raise
    except Exception as error:
        raise BagError(f"cannot read bag '{bag}': {type(error).__name__}: {error}") from None
    drawn = []
    for stamp, rgb in sorted(frames.items()):
        label = labels.get(stamp, np.zeros(rgb.shape[:2], np.uint8))
        objects = [DrawnObject(int(i), label == i, names.get(int(i), "")) for i in np.unique(label) if i]
        drawn.append(overlay(rgb, objects))
    return drawn


def fit(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Scale a frame into `hw` keeping its aspect, black bars around: a bag may change resolution."""
    if frame.shape[:2] == tuple(hw):
        return frame
    height, width = hw
    scale = min(width / frame.shape[1], height / frame.shape[0])
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    canvas = np.zeros((height, width, 3), np.uint8)
    x, y = (width - size[0]) // 2, (height - size[1]) // 2
    canvas[y:y + size[1], x:x + size[0]] = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return canvas


def contact_sheet(frames: list[np.ndarray], count: int = 12, columns: int = 4, banner: str = "") -> np.ndarray:
    """Lay evenly sampled frames out in a grid, each tagged with its index."""
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    height, width = frames[0].shape[:2]
    rows = math.ceil(len(picks) / columns)
    top = 36 if banner else 0
    sheet = np.full((top + rows * (height + 4), columns * (width + 4), 3), 255, np.uint8)
    for n, index in enumerate(picks):
        tile = fit(frames[index], (height, width)).copy()
        cv2.putText(tile, f"frame {index}", (6, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y, x = top + (n // columns) * (height + 4), (n % columns) * (width + 4)
        sheet[y:y + height, x:x + width] = tile
    if banner:
        cv2.putText(sheet, banner, (8, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (220, 0, 0), 2, cv2.LINE_AA)
    return sheet


def write_video(frames: list[np.ndarray], path: Path, fps: float) -> None:
    height, width = frames[0].shape[:2]
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not video.isOpened():
        raise BagError(f"OpenCV cannot write mp4 video to '{path}'")
    for frame in frames:  # OpenCV silently drops frames of another size than the first
        video.write(cv2.cvtColor(fit(frame, (height, width)), cv2.COLOR_RGB2BGR))
    video.release()


def main(argv: list[str] | None = None) -> int:
    """Command line: sam2_render OUT_BAG [--video F.mp4] [--sheet F.png]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bag", type=Path, help="an output bag of sam2_replay")
    parser.add_argument("--video", type=Path, help="mp4 to write (default: BAG.mp4)")
    parser.add_argument("--sheet", type=Path, help="contact sheet png to write (default: BAG.png)")
    parser.add_argument("--image-topic", default="/camera/image_raw")
    parser.add_argument("--node", default="/sam2_segmenter_node")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--banner", default="", help="text across the top of the contact sheet")
    parser.add_argument("--force", action="store_true", help="overwrite an existing video or sheet")
    args = parser.parse_args(argv)
    video = args.video or args.bag.with_suffix(".mp4")
    sheet = args.sheet or args.bag.with_suffix(".png")
    try:
        for path in (video, sheet):
            if path.exists() and not args.force:
                raise BagError(f"'{path}' already exists: give another path, or --force to overwrite it")
        frames = read_frames(args.bag, args.image_topic, args.node)
        if not frames:
            raise BagError(f"no frames on '{args.image_topic}' in {args.bag}")
        write_video(frames, video, args.fps)
        cv2.imwrite(str(sheet), cv2.cvtColor(contact_sheet(frames, banner=args.banner), cv2.COLOR_RGB2BGR))
    except BagError as error:
        print(f"sam2_render: {error}", file=sys.stderr)
        return 2
    print(f"wrote {video} ({len(frames)} frames) and {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
