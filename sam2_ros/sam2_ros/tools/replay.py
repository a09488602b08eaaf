"""sam2_replay: play a bag's camera and prompts into a running sam2_segmenter_node, record what it says.

Topics are published under their names in the bag (as `ros2 bag play` does): remap the node's
`image` and `prompt` (and `depth`, `camera_info`, `depth/camera_info`) onto them. The camera
infos and the depth topic go out as they come in the bag. Everything the node publishes on
`~/result` and `~/mask` is written to the output bag, beside the camera frames, so sam2_render
can draw it. Ground truth (a label image, and object 1's 3D centroid) is scored, not published.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Image
from tqdm import tqdm

from sam2_ros.ros.conversions import image_to_array
from sam2_ros.ros.prompt_msgs import stamp_ns
from sam2_ros.tools.bags import BagError, message_class, typestore, writer
from sam2_ros_interfaces.msg import SegmentationResult

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
PROMPT_TYPE = "sam2_ros_interfaces/msg/Prompt"


@dataclass
class Summary:
    """What a replay did."""

    published: int = 0
    processed: int = 0
    seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    centroid_error_m: list[float] = field(default_factory=list)  # object 1, frames where it has 3D
    frames_3d_truth: int = 0  # frames with a ground-truth centroid

    @property
    def skipped(self) -> int:
        return self.published - self.processed

    def table(self) -> str:
        p50, p95 = (np.percentile(self.latency_ms, [50, 95]) if self.latency_ms else (float("nan"),) * 2)
        rows = [("frames published", self.published), ("frames processed", self.processed),
                ("frames skipped", self.skipped),
                ("throughput", f"{self.processed / self.seconds:.2f} frames/s" if self.seconds else "n/a"),
                ("latency p50", f"{p50:.1f} ms"), ("latency p95", f"{p95:.1f} ms"),
                ("mean IoU vs ground truth", f"{np.mean(self.iou):.3f} over {len(self.iou)} frames"
                 if self.iou else "no ground truth in the bag")]
        if self.frames_3d_truth:
            errors = self.centroid_error_m
            rows.append(("3D centroid error (object 1)",
                         f"p50 {np.median(errors):.4f} m, max {np.max(errors):.4f} m over {len(errors)} of "
                         f"{self.frames_3d_truth} frames" if errors else
                         f"no 3D on any of {self.frames_3d_truth} frames (node started with depth:=true?)"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


CAMERA_INFO = "sensor_msgs/msg/CameraInfo"


class CorruptBag(BagError):
    """A message that cannot be read: the run ends there, its output bag closed and readable."""

    summary: Summary | None = None


@dataclass(frozen=True)
class Plan:
    """What a replay reads, found from the bag's metadata alone (no message is read)."""

    bag: Path
    connections: list
    image_type: str
    messages: int


def inspect(bag: Path, image_topic: str, prompt_topic: str, truth_topic: str, depth_topic: str = "",
            centroid_topic: str = "") -> Plan:
    """Check the bag's topics and types; clear errors for a bad bag."""
    if not bag.exists():
        raise BagError(f"no bag at '{bag}'")
    try:
        with Reader(bag) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            if image_topic not in topics:
                raise BagError(f"topic '{image_topic}' is not in {bag}; it has: {', '.join(sorted(topics))}")
            if topics[image_topic] not in IMAGE_TYPES:
                raise BagError(f"topic '{image_topic}' holds {topics[image_topic]}, not an image "
                               f"({' or '.join(IMAGE_TYPES)})")
            if prompt_topic in topics and topics[prompt_topic] != PROMPT_TYPE:
                raise BagError(f"topic '{prompt_topic}' holds {topics[prompt_topic]}, not {PROMPT_TYPE}")
            if depth_topic in topics and topics[depth_topic] != "sensor_msgs/msg/Image":
                raise BagError(f"topic '{depth_topic}' holds {topics[depth_topic]}, not sensor_msgs/msg/Image")
            named = (image_topic, prompt_topic, truth_topic, depth_topic, centroid_topic)
            wanted = [c for c in reader.connections if c.topic in named or c.msgtype == CAMERA_INFO]
            return Plan(bag, wanted, topics[image_topic], sum(c.msgcount for c in wanted))
    except BagError:
        raise
    except Exception as error:  # rosbags raises many kinds on a damaged file
        raise BagError(f"cannot read bag '{bag}' (truncated or damaged?): {type(error).__name__}: {error}") \
            from None


def read(plan: Plan):
    """Yield (position, topic, msgtype, bag ns, raw) one message at a time; a damaged one is a CorruptBag."""
    position, topic = 0, "?"
    try:
        with Reader(plan.bag) as reader:
            for position, (connection, bag_ns, raw) in enumerate(reader.messages(connections=plan.connections)):
                topic = connection.topic
                yield position, topic, connection.msgtype, bag_ns, raw
    except Exception as error:  # the storage gave up half-way: what was read is still recorded
        raise CorruptBag(f"message {position + 1} of {plan.messages} (after one on '{topic}') cannot be read: "
                         f"{type(error).__name__}: {error}") from None


def decode(raw: bytes, msgtype: str, topic: str, position: int, total: int):
    """Deserialise one message; a corrupt one names its topic and position."""
    try:
        return deserialize_message(raw, message_class(msgtype))
    except BagError:
        raise
    except Exception as error:  # rclpy raises RMWError on bytes that are not this type's CDR
        raise CorruptBag(f"message {position + 1} of {total} on '{topic}' ({msgtype}) is corrupt: "
                         f"{type(error).__name__}: {error}") from None


class Replayer:
    """Publishes a bag's messages and collects the node's answers."""

    def __init__(self, node_name: str):
        self.node = rclpy.create_node("sam2_replay")
        self.results: dict[int, list[tuple[float, SegmentationResult, bytes]]] = {}
        self.masks: dict[int, list[bytes]] = {}  # every result has its label image, on a topic of its own
        self._lock = threading.Condition()
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(SegmentationResult, f"{node_name}/result", self._result_cb, reliable, raw=True)
        self.node.create_subscription(Image, f"{node_name}/mask", self._mask_cb, reliable, raw=True)
        self._publishers: dict[str, object] = {}
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # spin_once with a timeout, not spin(): an executor shut down before spin() begins makes
        # spin() wait forever (seen under load), and close() would then never return
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        """Stop and join the spinning thread before the node and context go (no abort at exit)."""
        self._stop.set()
        self._thread.join()
        self._executor.shutdown()
        self.node.destroy_node()

    def _result_cb(self, raw: bytes) -> None:
        msg = deserialize_message(raw, SegmentationResult)
        with self._lock:
            self.results.setdefault(stamp_ns(msg.header), []).append((time.monotonic(), msg, raw))
            self._lock.notify_all()

    def _mask_cb(self, raw: bytes) -> None:
        msg = deserialize_message(raw, Image)
        with self._lock:
            self.masks.setdefault(stamp_ns(msg.header), []).append(raw)
            self._lock.notify_all()

    def publisher(self, topic: str, msgtype: str):
        if topic not in self._publishers:
            reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            self._publishers[topic] = self.node.create_publisher(message_class(msgtype), topic, reliable)
        return self._publishers[topic]

    def wait_for_node(self, required: dict[str, str], optional: list[str], timeout: float,
                      grace: float = 2.0) -> None:
        """Wait until the node subscribes to every required topic (camera, prompts), then briefly for the rest.

        A message published before its subscriber is matched is lost (volatile QoS): a prompt lost so
        changes every later mask. `required` maps a topic to the node's input name it must be remapped from.
        """
        deadline = time.monotonic() + timeout
        for topic, name in required.items():
            while self._publishers[topic].get_subscription_count() == 0:
                if time.monotonic() > deadline:
                    raise BagError(f"no sam2_segmenter_node subscribes to '{topic}' after {timeout:.0f} s: start "
                                   f"it with -r {name}:={topic}")
                time.sleep(0.05)
        deadline = time.monotonic() + grace  # depth and camera infos: the node may not want them
        while (time.monotonic() < deadline
               and any(self._publishers[topic].get_subscription_count() == 0 for topic in optional)):
            time.sleep(0.05)

    def answered_up_to(self) -> int | None:
        """Return the newest frame stamp answered (result and label image): frames before it get no more."""
        with self._lock:
            return max((stamp for stamp in self.results if self._answers(stamp)), default=None)

    def take(self, stamp: int) -> tuple[list[tuple[float, SegmentationResult, bytes]], bytes | None]:
        """Hand over (and forget) a settled frame's answers and label image."""
        with self._lock:
            return self.results.pop(stamp, []), (self.masks.pop(stamp, None) or [None])[-1]

    def forget_before(self, stamp: int) -> None:
        """Drop answers for frames before `stamp` that nobody will ask for (memory stays flat)."""
        with self._lock:
            for kept in (self.results, self.masks):
                for old in [s for s in kept if s < stamp]:
                    del kept[old]

    def answers(self, stamp: int) -> int:
        """How many complete answers (result and label image) a frame has had so far."""
        with self._lock:
            return self._answers(stamp)

    def _answers(self, stamp: int) -> int:
        return min(len(self.results.get(stamp, [])), len(self.masks.get(stamp, [])))

    def wait_results(self, stamp: int, count: int, timeout: float) -> bool:
        """Wait for `count` answers to a frame, each with its label image (published just after it)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._answers(stamp) < count:
                if not self._lock.wait(max(0.0, deadline - time.monotonic())):
                    return False
        return True


class Recorder:
    """The output bag: each frame is written as it is published, its answers once it is settled.

    A frame is settled once the node has answered a later frame (it answers in order); then its
    last answer and label image are written and forgotten, so memory does not grow with the bag.
    """

    def __init__(self, out: Path, storage: str, image_topic: str, image_type: str, node_name: str,
                 summary: Summary):
        store = typestore()
        self._bag = writer(out, storage)
        self._bag.open()
        add = self._bag.add_connection
        self._frames = add(image_topic, image_type, typestore=store)
        self._results = add(f"{node_name}/result", "sam2_ros_interfaces/msg/SegmentationResult", typestore=store)
        self._masks = add(f"{node_name}/mask", "sensor_msgs/msg/Image", typestore=store)
        self.summary = summary
        self.sent: dict[int, float] = {}  # frame stamp -> when it was published, until settled
        self.truths: dict[int, bytes] = {}
        self.centroids: dict[int, np.ndarray] = {}

    def settle(self, replayer: Replayer, everything: bool = False) -> None:
        """Write every frame the node will not answer again (all of them at the end)."""
        newest = replayer.answered_up_to()
        for stamp in sorted(self.sent):
            if not everything and (newest is None or stamp >= newest):
                break
            self._write(stamp, self.sent.pop(stamp), *replayer.take(stamp))
        low = min(self.sent, default=newest if newest is not None and not everything else 2**63)
        for kept in (self.truths, self.centroids):
            for old in [s for s in kept if s < low]:
                del kept[old]
        replayer.forget_before(low)

    def frame(self, stamp: int, raw: bytes) -> None:
        """Record a camera frame as it is published."""
        self._bag.write(self._frames, stamp, raw)
        self.sent[stamp] = time.monotonic()

    def _write(self, stamp: int, published_at: float, answers, mask: bytes | None) -> None:
        if stamp in self.centroids:
            self.summary.frames_3d_truth += 1
        if not answers:
            return
        self.summary.processed += 1
        self.summary.latency_ms.append((answers[0][0] - published_at) * 1e3)
        self._bag.write(self._results, stamp, answers[-1][2])  # the last answer includes prompts on that frame
        error = centroid_error(answers[-1][1], self.centroids.get(stamp))
        if error is not None:
            self.summary.centroid_error_m.append(error)
        if mask is not None:
            self._bag.write(self._masks, stamp, mask)
            if stamp in self.truths:
                self.summary.iou.append(_iou(mask, self.truths[stamp]))

    def close(self) -> None:
        self._bag.close()


def replay(bag: Path, out: Path, image_topic: str = "/camera/image_raw", prompt_topic: str = "/sam2/prompt",
           truth_topic: str = "/ground_truth/mask", node_name: str = "/sam2_segmenter_node",
           rate: float | None = None, storage: str = "mcap", timeout: float = 120.0,
           progress: bool = True, depth_topic: str = "/camera/aligned_depth_to_color/image_raw",
           centroid_topic: str = "/ground_truth/centroid") -> Summary:
    """Replay `bag` into the node and record its answers into `out`, one message at a time.

    A corrupt message ends the replay with CorruptBag, after everything before it is recorded.
    """
    plan = inspect(bag, image_topic, prompt_topic, truth_topic, depth_topic, centroid_topic)
    summary = Summary()
    replayer = Replayer(node_name)
    recorder = None
    try:
        published = {c.topic: c.msgtype for c in plan.connections if c.topic not in (truth_topic, centroid_topic)}
        for topic, msgtype in published.items():  # all made now: each must be matched before its first message
            replayer.publisher(topic, msgtype)
        required = {image_topic: "image/compressed" if plan.image_type.endswith("CompressedImage") else "image"}
        if prompt_topic in published:
            required[prompt_topic] = "prompt"
        replayer.wait_for_node(required, [t for t in published if t not in required], timeout=min(timeout, 30.0))
        recorder = Recorder(out, storage, image_topic, plan.image_type, node_name, summary)
        start, first_bag_ns, newest = time.monotonic(), None, None
        try:
            for position, topic, msgtype, bag_ns, raw in tqdm(read(plan), total=plan.messages, desc="sam2_replay",
                                                              unit="msg", disable=not progress):
                first_bag_ns = bag_ns if first_bag_ns is None else first_bag_ns
                msg = decode(raw, msgtype, topic, position, plan.messages)
                if topic == truth_topic:
                    recorder.truths[stamp_ns(msg.header)] = raw
                    continue
                if topic == centroid_topic:
                    recorder.centroids[stamp_ns(msg.header)] = np.array([msg.point.x, msg.point.y, msg.point.z])
                    continue
                if rate:  # at the bag's own pace (scaled): the node skips what it cannot keep up with
                    time.sleep(max(0.0, start + (bag_ns - first_bag_ns) / 1e9 / rate - time.monotonic()))
                if topic == image_topic:
                    newest = stamp_ns(msg.header)
                    recorder.frame(newest, raw)
                    replayer.publisher(topic, msgtype).publish(msg)
                    summary.published += 1
                    if not rate:
                        replayer.wait_results(newest, 1, timeout)
                elif msgtype != PROMPT_TYPE:  # depth and camera infos: the node pairs them itself
                    replayer.publisher(topic, msgtype).publish(msg)
                else:
                    before = replayer.answers(newest)
                    replayer.publisher(topic, msgtype).publish(msg)
                    if not rate and newest is not None:  # the node answers a prompt with a new result
                        replayer.wait_results(newest, before + 1, timeout)
                recorder.settle(replayer)
        except CorruptBag as error:
            error.summary = summary  # what was replayed before it, for the caller's report
            raise
        finally:  # also after a corrupt message: the answers to what was sent are recorded
            if newest is not None:
                replayer.wait_results(newest, 1, timeout)
            summary.seconds = time.monotonic() - start
            recorder.settle(replayer, everything=True)
    finally:
        if recorder is not None:
            recorder.close()
        replayer.close()
    return summary


def centroid_error(result: SegmentationResult, truth: np.ndarray | None) -> float | None:
    """Distance from object 1's 3D centroid to the ground truth; None without either."""
    found = next((o for o in result.objects if o.object_id == 1), None)
    if truth is None or found is None or not found.has_3d:
        return None
    ours = np.array([found.centroid_3d.x, found.centroid_3d.y, found.centroid_3d.z])
    return float(np.linalg.norm(ours - truth))


def _iou(label_raw: bytes, truth_raw: bytes) -> float:
    """IoU of every ground-truth object id with the node's pixels of the same id, averaged."""
    labels = image_to_array(deserialize_message(label_raw, Image))
    truth = image_to_array(deserialize_message(truth_raw, Image))
    scores = []
    for object_id in np.unique(truth[truth > 0]):
        ours, theirs = labels == object_id, truth == object_id
        scores.append(np.count_nonzero(ours & theirs) / np.count_nonzero(ours | theirs))
    return float(np.mean(scores)) if scores else float("nan")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse a bad command line before the node sees a single message (it would keep the prompts)."""
    if args.rate is not None and not args.rate > 0:
        raise BagError(f"--rate must be positive, got {args.rate}")
    if not args.timeout > 0:
        raise BagError(f"--timeout must be positive, got {args.timeout}")
    inspect(args.bag, args.image_topic, args.prompt_topic, args.truth_topic, args.depth_topic,
            args.centroid_topic)
    if not args.out.parent.is_dir():
        raise BagError(f"no folder '{args.out.parent}' for --out")
    if args.out.exists():
        if not args.force:
            raise BagError(f"'{args.out}' already exists: give a new --out, or --force to replace it")
        if args.out.is_dir():
            shutil.rmtree(args.out)
        else:
            args.out.unlink()


def main(argv: list[str] | None = None) -> int:
    """Command line: sam2_replay BAG --out OUT [--rate R] [topics]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bag", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="output bag to create")
    parser.add_argument("--image-topic", default="/camera/image_raw")
    parser.add_argument("--prompt-topic", default="/sam2/prompt")
    parser.add_argument("--truth-topic", default="/ground_truth/mask")
    parser.add_argument("--depth-topic", default="/camera/aligned_depth_to_color/image_raw",
                        help="registered depth, published when the bag has it")
    parser.add_argument("--centroid-topic", default="/ground_truth/centroid",
                        help="object 1's true 3D centroid (geometry_msgs/PointStamped), scored when present")
    parser.add_argument("--node", default="/sam2_segmenter_node", help="the node's name with namespace")
    parser.add_argument("--rate", type=float, help="play at the bag's rate times this; default: as fast as "
                                                   "the node keeps up")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one answer")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:  # every argument is checked before anything reaches the node
        check_arguments(args)
    except BagError as error:
        print(f"sam2_replay: {error}", file=sys.stderr)
        return 2
    rclpy.init()
    try:
        summary = replay(args.bag, args.out, args.image_topic, args.prompt_topic, args.truth_topic, args.node,
                         args.rate, args.storage, args.timeout, depth_topic=args.depth_topic,
                         centroid_topic=args.centroid_topic)
    except CorruptBag as error:
        if error.summary is not None:
            print(error.summary.table())
            print(f"output bag (up to the corrupt message): {args.out}")
        print(f"sam2_replay: {error}", file=sys.stderr)
        return 2
    except BagError as error:
        print(f"sam2_replay: {error}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    print(summary.table())
    print(f"output bag: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
