"""sam2_render: an output bag of sam2_replay -> overlay video (mp4) and contact sheet (png)."""
from __future__ import annotations

import argparse
import math
import sys
from collections import deque
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import CompressedImage, Image
from tqdm import tqdm

from sam2_ros.core.render import DrawnObject, overlay
from sam2_ros.ros.conversions import ImageError, compressed_to_rgb, image_to_array, image_to_rgb
from sam2_ros.ros.prompt_msgs import stamp_ns
from sam2_ros.tools.bags import BagError
from sam2_ros_interfaces.msg import SegmentationResult

WINDOW_NS = 2_000_000_000  # a frame is drawn once the bag's log time is this far past it (its mask comes later)
MAX_PENDING = 64  # frames held at most: memory stays flat whatever the bag's length


def frame_count(bag: Path, image_topic: str, node_name: str) -> int:
    """Check the bag has what is drawn (from its metadata alone); return how many camera frames it holds."""
    if not bag.exists():
        raise BagError(f"no bag at '{bag}'")
    try:
        with Reader(bag) as reader:
            topics = {c.topic: c for c in reader.connections}
    except Exception as error:
        raise BagError(f"cannot read bag '{bag}': {type(error).__name__}: {error}") from None
    for needed in (image_topic, f"{node_name}/mask"):
        if needed not in topics:
            raise BagError(f"topic '{needed}' is not in {bag}; it has: {', '.join(sorted(topics))}")
    return topics[image_topic].msgcount


def drawn_frames(bag: Path, image_topic: str, node_name: str) -> Iterator[np.ndarray]:
    """Yield each camera frame of the bag with the node's masks drawn, in bag order, holding only a few.

    Frames are told apart by their position in the bag, never by stamp alone (a camera that does
    not stamp, a looped recording, a simulator reset): a label image belongs to the latest camera
    frame before it with its stamp, and the last one wins (a prompt's answer after the frame's).
    """
    pending: deque[list] = deque()  # [stamp, rgb, label image or None, log time], in bag order
    names: dict[int, str] = {}

    def ready(now_ns: int | None):
        while pending and (now_ns is None or len(pending) > MAX_PENDING or pending[0][3] < now_ns - WINDOW_NS):
            _, rgb, label, _ = pending.popleft()
            if isinstance(rgb, str):  # a frame that cannot be decoded (the node refused it too): said in its place
                yield unreadable(rgb)
                continue
            label = label if label is not None else np.zeros(rgb.shape[:2], np.uint8)
            yield overlay(rgb, [DrawnObject(int(i), label == i, names.get(int(i), "")) for i in np.unique(label) if i])

    position, topic, camera_frames = 0, "?", 0
    try:
        with Reader(bag) as reader:
            wanted = [c for c in reader.connections
                      if c.topic in (image_topic, f"{node_name}/mask", f"{node_name}/result")]
            for position, (connection, log_ns, raw) in enumerate(reader.messages(connections=wanted)):
                topic = connection.topic
                if topic == image_topic:
                    compressed = connection.msgtype.endswith("CompressedImage")
                    msg = deserialize_message(raw, CompressedImage if compressed else Image)
                    camera_frames += 1
                    try:
                        rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
                    except ImageError as error:
                        rgb = f"camera frame {camera_frames}: {error}"
                        print(f"sam2_render: {rgb}; drawn as a black frame", file=sys.stderr)
                    pending.append([stamp_ns(msg.header), rgb, None, log_ns])
                elif topic == f"{node_name}/mask":
                    msg = deserialize_message(raw, Image)
                    frame = next((p for p in reversed(pending) if p[0] == stamp_ns(msg.header)), None)
                    if frame is not None:  # else its frame was drawn already, or is not in the bag
                        frame[2] = image_to_array(msg)
                else:
                    msg = deserialize_message(raw, SegmentationResult)
                    names.update({o.object_id: o.label for o in msg.objects})
                yield from ready(log_ns)
    except Exception as error:  # a damaged file, or a message that is not what its topic says
        raise BagError(f"message {position + 1} of bag '{bag}' (on '{topic}') cannot be read: "
                       f"{type(error).__name__}: {error}") from None
    yield from ready(None)


def unreadable(reason: str, hw: tuple[int, int] = (240, 320)) -> np.ndarray:
    """Draw a black frame saying why the camera frame could not be drawn (fit() scales it to the video)."""
    frame = np.zeros((*hw, 3), np.uint8)
    cv2.putText(frame, reason[:48], (6, hw[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


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


class ContactSheet:
    """Evenly spaced frames of a clip of known length, kept as they stream past, laid out in a grid."""

    def __init__(self, total: int, count: int = 12, columns: int = 4):
        self.picks = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        self.columns, self.tiles = columns, []

    def offer(self, index: int, frame: np.ndarray) -> None:
        if index in self.picks:
            self.tiles.append((index, frame))

    def image(self, banner: str = "") -> np.ndarray:
        height, width = self.tiles[0][1].shape[:2]
        rows = math.ceil(len(self.tiles) / self.columns)
        top = 36 if banner else 0
        sheet = np.full((top + rows * (height + 4), self.columns * (width + 4), 3), 255, np.uint8)
        for n, (index, frame) in enumerate(self.tiles):
            tile = fit(frame, (height, width)).copy()
            cv2.putText(tile, f"frame {index}", (6, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                        cv2.LINE_AA)
            y, x = top + (n // self.columns) * (height + 4), (n % self.columns) * (width + 4)
            sheet[y:y + height, x:x + width] = tile
        if banner:
            cv2.putText(sheet, banner, (8, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (220, 0, 0), 2, cv2.LINE_AA)
        return sheet


def render(bag: Path, video_path: Path, sheet_path: Path, image_topic: str, node_name: str, fps: float,
           banner: str = "", progress: bool = True) -> int:
    """Draw, write and forget one frame at a time; return how many frames were written."""
    total = frame_count(bag, image_topic, node_name)
    if not total:
        raise BagError(f"no frames on '{image_topic}' in {bag}")
    sheet, video, written = ContactSheet(total), None, 0
    try:
        for frame in tqdm(drawn_frames(bag, image_topic, node_name), total=total, desc="sam2_render", unit="frame",
                          disable=not progress):
            if video is None:
                hw = frame.shape[:2]
                video = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (hw[1], hw[0]))
                if not video.isOpened():
                    raise BagError(f"OpenCV cannot write mp4 video to '{video_path}'")
            video.write(cv2.cvtColor(fit(frame, hw), cv2.COLOR_RGB2BGR))  # OpenCV drops frames of another size
            sheet.offer(written, frame)
            written += 1
    finally:
        if video is not None:
            video.release()
    cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet.image(banner), cv2.COLOR_RGB2BGR))
    return written


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
    try:  # every argument is checked before anything is written
        if not args.fps > 0:
            raise BagError(f"--fps must be positive, got {args.fps}")
        for path in (video, sheet):
            if path.exists() and not args.force:
                raise BagError(f"'{path}' already exists: give another path, or --force to overwrite it")
            if not path.parent.is_dir():
                raise BagError(f"no folder '{path.parent}' for '{path.name}'")
        written = render(args.bag, video, sheet, args.image_topic, args.node, args.fps, args.banner)
    except BagError as error:
        print(f"sam2_render: {error}", file=sys.stderr)
        return 2
    print(f"wrote {video} ({written} frames) and {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
