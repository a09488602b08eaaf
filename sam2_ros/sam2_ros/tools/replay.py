"""sam2_replay: play a bag's camera and prompts into a running sam2_segmenter_node, record what it says.

Topics are published under their names in the bag (as `ros2 bag play` does): remap the node's
`image` and `prompt` (and `depth`, `camera_info`, `depth/camera_info`) onto them. The camera
infos and the depth topic go out as they come in the bag. Everything the node publishes on
`~/result` and `~/mask` is written to the output bag, beside the camera frames, so sam2_render
can draw it. Ground truth (a label image, and object 1's 3D centroid) is scored, not published.

Frames are kept apart by their position in the bag, never by stamp alone. The node answers a
frame with that frame's stamp, so where the bag's camera stamps cannot tell frames apart (zero,
repeated, going back), every stamped message from there on is published shifted to stamps of
its own, strictly increasing (`--keep-stamps` publishes the bag's), and the output bag holds
the frames as published, each followed by its answer. A frame or prompt the node refuses is
reported (from its /diagnostics) and passed.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.signals import SignalHandlerOptions
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
    refused: int = 0  # frames the node refused (its /diagnostics said so)
    restamped: int = 0  # frames whose stamps were shifted to tell them apart
    seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    centroid_error_m: list[float] = field(default_factory=list)  # object 1, frames where it has 3D
    frames_3d_truth: int = 0  # frames with a ground-truth centroid

    @property
    def skipped(self) -> int:
        return self.published - self.processed - self.refused

    def table(self) -> str:
        p50, p95 = (np.percentile(self.latency_ms, [50, 95]) if self.latency_ms else (float("nan"),) * 2)
        rows = [("frames published", self.published), ("frames processed", self.processed),
                ("frames skipped", self.skipped), ("frames refused by the node", self.refused),
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
MAX_TRUTHS = 256  # ground truths held for frames not yet written
MAX_HELD = 64  # messages held at most while waiting for the next camera frame


class CorruptBag(BagError):
    """A message that cannot be read: the run ends there, its output bag closed and readable."""

    summary: Summary | None = None


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run ends where it is, its output bag closed and readable."""

    summary: Summary | None = None

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_received: list[int] = []  # the signals main()'s handler took: their exception may not come out as raised


def _interrupt(signum: int, _frame) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def _as_interruption(error: BaseException) -> BaseException:
    """Return the Interrupted of a signal taken meanwhile, whatever `error` it came out as; else `error`.

    A signal's exception raised while a compiled call runs Python code comes out of it as another
    error: from rclpy's deserialize_message as "TypeError: Unable to convert function return value"
    (about half of the signals sent during a call; seen in CI as a "corrupt" message).
    """
    return Interrupted(_received[0]) if _received and not isinstance(error, Interrupted) else error


STEP_NS = 1_000_000  # a shifted frame is stamped this long after the frame before it


class Stamps:
    """The stamps replay publishes: the bag's, shifted where its camera frames' stamps cannot tell them apart.

    A camera frame stamped zero, or not after the frame before it (a repeat, a loop, a clock that
    went back), moves the shift so that it lands STEP_NS after that frame; every stamped message
    from there on (depth, camera infos, prompts, ground truth) moves with it, so what belonged
    together still does. A prompt stamped zero (the newest frame) stays zero.
    """

    def __init__(self, keep: bool = False):
        self.keep, self.shift_ns = keep, 0
        self._last: int | None = None

    def frame(self, stamp: int) -> tuple[int, str]:
        """Return the stamp to publish a camera frame with, and why it moved ("" when it did not)."""
        published = stamp + self.shift_ns
        floor = 0 if self._last is None else self._last
        why = ""
        if not self.keep and published <= floor:
            why = "zero" if stamp == 0 else f"not after the frame before it ({floor - self.shift_ns} ns)"
            self.shift_ns += floor + STEP_NS - published
            published = stamp + self.shift_ns
        self._last = published
        return published, why

    def other(self, stamp: int) -> int:
        """Return the stamp to publish any other stamped message with (zero stays zero)."""
        return stamp + self.shift_ns if stamp else 0


def restamped(msg, raw: bytes, stamp: int) -> tuple[object, bytes]:
    """Return the message with its header stamped `stamp`, and its bytes (the bag's own when unchanged)."""
    if stamp_ns(msg.header) == stamp:
        return msg, raw
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    return msg, serialize_message(msg)


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
        # the node says what it refused on /diagnostics, once a second: "inputs rejected", "last error"
        self._status_name = f"{node_name.rstrip('/').rsplit('/', 1)[-1]}: processing"
        self._rejected: int | None = None
        self._last_error = ""
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics_cb, 10)
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

    def _diagnostics_cb(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self._status_name:
                values = {kv.key: kv.value for kv in status.values}
                with self._lock:
                    self._rejected = int(values.get("inputs rejected", 0))
                    self._last_error = values.get("last error", "")
                    self._lock.notify_all()

    def rejected(self) -> int | None:
        """How many inputs the node has refused so far, as its last /diagnostics said (None: none heard yet)."""
        with self._lock:
            return self._rejected

    def wait_answer(self, stamp: int, count: int, rejected: int | None, timeout: float) -> str | None:
        """Wait for a frame's `count`-th answer (with its label image), or for the node to refuse an input.

        Returns None once answered, else why not: the node's own words when it refused something
        since it had refused `rejected` inputs, or the timeout.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._answers(stamp) < count:
                if rejected is not None and self._rejected is not None and self._rejected > rejected:
                    return f"refused by the node: {self._last_error}"
                if not self._lock.wait(max(0.0, deadline - time.monotonic())):
                    return f"no answer within --timeout {timeout:g} s"
        return None

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
        deadline = time.monotonic() + grace  # depth and camera infos: the node may not want them; its first
        while time.monotonic() < deadline and (  # /diagnostics is the count later refusals are told from
                self.rejected() is None
                or any(self._publishers[topic].get_subscription_count() == 0 for topic in optional)):
            time.sleep(0.05)

    def take(self, stamp: int) -> tuple[list[tuple[float, SegmentationResult, bytes]], bytes | None]:
        """Hand over (and forget) a settled frame's answers and label image."""
        with self._lock:
            return self.results.pop(stamp, []), (self.masks.pop(stamp, None) or [None])[-1]

    def answers(self, stamp: int) -> int:
        """How many complete answers (result and label image) a frame has had so far."""
        with self._lock:
            return self._answers(stamp)

    def _answers(self, stamp: int) -> int:
        return min(len(self.results.get(stamp, [])), len(self.masks.get(stamp, [])))


class Recorder:
    """The output bag: each frame is written as it is published, its answers once it is settled.

    Frames are kept in bag order. A frame is settled once the node has answered a frame published
    after it (it answers in order); then its last answer and label image are written and
    forgotten, so memory does not grow with the bag. Every message gets a log time of its own,
    increasing with the frames, so the output bag reads back in the order it was played.
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
        self.sent: deque[tuple[int, float, int]] = deque()  # (stamp published, when, log time), in bag order
        self.truths: OrderedDict[int, bytes] = OrderedDict()  # by stamp as published
        self.centroids: OrderedDict[int, np.ndarray] = OrderedDict()
        self._clock = 0

    def keep_truth(self, kept: OrderedDict, stamp: int, value) -> None:
        """Hold a ground truth until its frame is written (a bounded number: never one a frame missed)."""
        kept[stamp] = value
        while len(kept) > MAX_TRUTHS:
            kept.popitem(last=False)

    def settle(self, replayer: Replayer, everything: bool = False) -> None:
        """Write every frame the node will not answer again (all of them at the end)."""
        answered = len(self.sent) if everything else next(
            (i for i in range(len(self.sent) - 1, -1, -1) if replayer.answers(self.sent[i][0])), 0)
        for _ in range(answered):
            self._write(*self.sent.popleft(), replayer)

    def frame(self, stamp: int, raw: bytes) -> None:
        """Record a camera frame (as published) when it is published."""
        self._clock = max(time.time_ns(), self._clock + 10)
        self._bag.write(self._frames, self._clock, raw)
        self.sent.append((stamp, time.monotonic(), self._clock))

    def _write(self, stamp: int, published_at: float, log_ns: int, replayer: Replayer) -> None:
        answers, mask = replayer.take(stamp)
        truth, centroid = self.truths.pop(stamp, None), self.centroids.pop(stamp, None)
        if centroid is not None:
            self.summary.frames_3d_truth += 1
        if not answers:
            return
        self.summary.processed += 1
        self.summary.latency_ms.append((answers[0][0] - published_at) * 1e3)
        self._bag.write(self._results, log_ns + 1, answers[-1][2])  # the last answer includes prompts on it
        error = centroid_error(answers[-1][1], centroid)
        if error is not None:
            self.summary.centroid_error_m.append(error)
        if mask is not None:
            self._bag.write(self._masks, log_ns + 2, mask)
            if truth is not None:
                self.summary.iou.append(_iou(mask, truth))

    def close(self) -> None:
        self._bag.close()


def report(line: str) -> None:
    tqdm.write(f"sam2_replay: {line}", file=sys.stderr)


class Playback:
    """One replay's publishing: camera frames answered one by one, prompts after their frame, the rest held.

    Depth frames, camera infos and ground truth are held until the next camera frame, whose stamp
    decides the shift of those stamped like it (they usually come just before it in a bag).
    """

    def __init__(self, replayer: Replayer, recorder: Recorder, summary: Summary, stamps: Stamps, topics: dict,
                 rate: float | None, timeout: float):
        self.replayer, self.recorder, self.summary, self.stamps = replayer, recorder, summary, stamps
        self.topics, self.rate, self.timeout = topics, rate, timeout  # truth and centroid topics by role
        self.newest: tuple[int, int | None] | None = None  # the last frame's stamp, the refusals before it
        self._held: list[tuple[str, str, object, bytes]] = []

    def frame(self, topic: str, msgtype: str, msg, raw: bytes) -> None:
        """Publish a camera frame (what was held first), record it, and wait for its answer or refusal."""
        summary, original = self.summary, stamp_ns(msg.header)
        shift_before = self.stamps.shift_ns
        stamp, why = self.stamps.frame(original)
        if why and not summary.restamped:
            report(f"camera frame {summary.published + 1} is stamped {original} ns, {why}: frames are published "
                   "with stamps of their own from here (--keep-stamps publishes the bag's)")
        summary.restamped += stamp != original
        self.release(lambda held: self.stamps.shift_ns if held == original else shift_before)
        msg, raw = restamped(msg, raw, stamp)
        self.recorder.frame(stamp, raw)
        before, rejected = self.replayer.answers(stamp), self.replayer.rejected()
        self.newest = (stamp, rejected)
        started = time.monotonic()
        self.replayer.publisher(topic, msgtype).publish(msg)
        summary.published += 1
        if not self.rate:
            why_not = self.replayer.wait_answer(stamp, before + 1, rejected, self.timeout)
            if why_not is not None:
                summary.refused += why_not.startswith("refused")
                report(f"camera frame {summary.published} (stamp {stamp} ns): {why_not} "
                       f"(after {time.monotonic() - started:.1f} s); passed")
        self.recorder.settle(self.replayer)

    def prompt(self, topic: str, msgtype: str, msg, raw: bytes, position: int) -> None:
        """Publish a prompt at once (it follows the frame it names) and wait for the answer it brings."""
        msg, _ = restamped(msg, raw, self.stamps.other(stamp_ns(msg.header)))
        before, rejected = ((self.replayer.answers(self.newest[0]), self.replayer.rejected()) if self.newest
                            else (0, None))
        self.replayer.publisher(topic, msgtype).publish(msg)
        if not self.rate and self.newest is not None:  # the node answers a prompt with a new result
            why_not = self.replayer.wait_answer(self.newest[0], before + 1, rejected, self.timeout)
            if why_not is not None:
                report(f"prompt for object {msg.object_id} (message {position + 1}): {why_not}; passed")
        self.recorder.settle(self.replayer)

    def hold(self, topic: str, msgtype: str, msg, raw: bytes) -> None:
        self._held.append((topic, msgtype, msg, raw))
        if len(self._held) > MAX_HELD:  # a long stretch without camera frames
            self.release(lambda _: self.stamps.shift_ns)

    def release(self, shift_for) -> None:
        """Send (or keep, for ground truth) what was held, each shifted by `shift_for(its stamp)`."""
        for topic, msgtype, msg, raw in self._held:
            original = stamp_ns(msg.header)
            stamp = original + shift_for(original)
            if topic == self.topics["truth"]:
                self.recorder.keep_truth(self.recorder.truths, stamp, raw)
            elif topic == self.topics["centroid"]:
                self.recorder.keep_truth(self.recorder.centroids, stamp,
                                         np.array([msg.point.x, msg.point.y, msg.point.z]))
            else:  # depth and camera infos: the node pairs them itself
                self.replayer.publisher(topic, msgtype).publish(restamped(msg, raw, stamp)[0])
        self._held = []


def replay(bag: Path, out: Path, image_topic: str = "/camera/image_raw", prompt_topic: str = "/sam2/prompt",
           truth_topic: str = "/ground_truth/mask", node_name: str = "/sam2_segmenter_node",
           rate: float | None = None, storage: str = "mcap", timeout: float = 120.0,
           progress: bool = True, depth_topic: str = "/camera/aligned_depth_to_color/image_raw",
           centroid_topic: str = "/ground_truth/centroid", keep_stamps: bool = False) -> Summary:
    """Replay `bag` into the node and record its answers into `out`, one message at a time.

    A corrupt message ends the replay with CorruptBag, and a signal with Interrupted, after
    everything before it is recorded.
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
        play = Playback(replayer, recorder, summary, Stamps(keep_stamps),
                        {"truth": truth_topic, "centroid": centroid_topic}, rate, timeout)
        start, first_bag_ns = time.monotonic(), None
        try:
            for position, topic, msgtype, bag_ns, raw in tqdm(read(plan), total=plan.messages, desc="sam2_replay",
                                                              unit="msg", disable=not progress):
                first_bag_ns = bag_ns if first_bag_ns is None else first_bag_ns
                msg = decode(raw, msgtype, topic, position, plan.messages)
                if topic != image_topic and msgtype != PROMPT_TYPE:
                    play.hold(topic, msgtype, msg, raw)
                    continue
                if rate:  # at the bag's own pace (scaled): the node skips what it cannot keep up with
                    time.sleep(max(0.0, start + (bag_ns - first_bag_ns) / 1e9 / rate - time.monotonic()))
                if topic == image_topic:
                    play.frame(topic, msgtype, msg, raw)
                else:
                    play.prompt(topic, msgtype, msg, raw, position)
            play.release(lambda _: play.stamps.shift_ns)
        except BaseException as error:
            stopped = _as_interruption(error)
            if isinstance(stopped, (CorruptBag, Interrupted)):
                stopped.summary = summary  # what was replayed before it, for the caller's report
            if stopped is error:
                raise
            raise stopped from None
        finally:  # also after a corrupt message or a signal: the answers to what was sent are recorded
            if play.newest is not None and not isinstance(sys.exc_info()[1], Interrupted):
                replayer.wait_answer(play.newest[0], 1, play.newest[1], timeout)  # the last frame's, or its refusal
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


def _stopped(stop: Interrupted, out: Path) -> int:
    """Report a run ended by a signal; the exit code a shell gives a process that signal ended."""
    if stop.summary is not None:
        print(stop.summary.table())
    print(f"output bag (up to the signal): {out}")
    print(f"sam2_replay: stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
    return 128 + stop.signum


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
    parser.add_argument("--keep-stamps", action="store_true",
                        help="publish the bag's stamps even where they are zero, repeat or go back (answers of "
                             "frames with one stamp then cannot be told apart)")
    args = parser.parse_args(argv)
    try:  # every argument is checked before anything reaches the node
        check_arguments(args)
    except BagError as error:
        print(f"sam2_replay: {error}", file=sys.stderr)
        return 2
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # SIGINT and SIGTERM end the run alike
    _received.clear()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = replay(args.bag, args.out, args.image_topic, args.prompt_topic, args.truth_topic, args.node,
                         args.rate, args.storage, args.timeout, depth_topic=args.depth_topic,
                         centroid_topic=args.centroid_topic, keep_stamps=args.keep_stamps)
    except Interrupted as stop:
        return _stopped(stop, args.out)
    except CorruptBag as error:
        if error.summary is not None:
            print(error.summary.table())
            print(f"output bag (up to the corrupt message): {args.out}")
        print(f"sam2_replay: {error}", file=sys.stderr)
        return 2
    except BagError as error:
        print(f"sam2_replay: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a signal's exception that came out of a compiled call as another error
        if (stop := _as_interruption(error)) is error:
            raise
        return _stopped(stop, args.out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()
        rclpy.try_shutdown()
    print(summary.table())
    print(f"output bag: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
