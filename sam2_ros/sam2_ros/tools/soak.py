"""The soak: a 30 Hz camera into an in-process node for minutes, with everything a robot's day brings.

Prompts, corrections, removals and resets (as service calls and topic prompts), camera
resolution changes, and bad inputs (undecodable and oversized images, hostile prompts) are
mixed into the stream. It measures what must not drift: memory, latency, results that do not
match their frame, requests left unanswered, and model failures.
"""
from __future__ import annotations

import itertools
import threading
import time

import cv2
import numpy as np
import psutil
import skimage.data
from geometry_msgs.msg import Point32
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tqdm import tqdm

from sam2_ros.ros.conversions import array_to_image
from sam2_ros.tools.node_probe import NodeProbe
from sam2_ros_interfaces.msg import Prompt
from sam2_ros_interfaces.srv import AddObjects, RemoveObject

NODE = "/sam2_segmenter_node"
CAMERA_HZ = 30.0
SIZES = ((640, 480), (320, 240), (800, 600))  # the camera switches resolution every `SIZE_PERIOD_S`
SIZE_PERIOD_S = 10.0


def _frames() -> dict[tuple[int, int], np.ndarray]:
    photo = skimage.data.astronaut()
    return {size: cv2.resize(photo, size, interpolation=cv2.INTER_AREA) for size in SIZES}


def _bad_image(kind: int, stamp: Header) -> Image:
    """Make an input a broken driver or a hostile peer sends: refused, never a model failure."""
    if kind == 0:  # declares 900 megapixels in a few bytes
        return Image(header=stamp, height=30000, width=30000, encoding="rgb8", step=90000, data=b"")
    if kind == 1:  # odd width for a format that packs two pixels
        return Image(header=stamp, height=4, width=5, encoding="uyvy", step=10, data=bytes(40))
    return Image(header=stamp, height=8, width=8, encoding="rgb8", step=24, data=bytes(10))  # truncated


def _hostile_prompt(kind: int) -> Prompt:
    if kind == 0:
        return Prompt(object_id=-1, points=[Point32(x=10.0, y=10.0)] * 500, point_labels=[1] * 500)
    if kind == 1:
        return Prompt(object_id=-1, points=[Point32(x=float("nan"), y=1.0)], point_labels=[1])
    return Prompt(object_id=-1, box=[50.0, 50.0, 10.0, 10.0])  # inverted


class Soak:
    """Drives the probe's node; collects what the invariants are checked on."""

    def __init__(self, probe: NodeProbe):
        self.probe = probe
        self.sent: dict[str, tuple[float, int, int]] = {}  # frame_id -> (published at, height, width)
        self.calls: list = []  # requests not yet answered (answered ones are only counted)
        self.requests = self.answered = 0
        self.latency: list[tuple[float, float]] = []  # (published at, ms) of each frame's first result
        self.results = self.mismatches = 0
        self._answered: set[str] = set()
        self.rss: list[tuple[float, float]] = []
        self.clients = {name: probe.peer.create_client(srv, f"{NODE}/{name}") for name, srv in
                        (("add_objects", AddObjects), ("remove_object", RemoveObject), ("reset", Trigger))}
        for client in self.clients.values():
            client.wait_for_service(timeout_sec=30)
        self._lock = threading.Lock()

    def publish(self, frame_id: str, rgb: np.ndarray) -> None:
        header = Header(frame_id=frame_id, stamp=self.probe.peer.get_clock().now().to_msg())
        msg = array_to_image(rgb, "rgb8", header)
        with self._lock:
            self.sent[frame_id] = (time.monotonic(), rgb.shape[0], rgb.shape[1])
        self.probe.camera.publish(msg)

    def absorb(self, keep_s: float = 60.0) -> None:
        """Check the results that came since the last call against their frames, and let them go.

        Nothing per result is kept but its latency, so the soak's own memory stays flat.
        """
        with self.probe._arrived:
            arrived, self.probe.results[:] = list(self.probe.results), []
        with self._lock:
            for at, result in arrived:
                self.results += 1
                frame_id = result.header.frame_id
                sent = self.sent.get(frame_id)
                if sent is None or (result.height, result.width) != sent[1:]:
                    self.mismatches += 1
                elif frame_id not in self._answered:  # the frame's own result, not a later prompt's
                    self._answered.add(frame_id)
                    self.latency.append((sent[0], (at - sent[0]) * 1e3))
            pending = []
            for call in self.calls:  # answered ones are counted and let go, responses and all
                if call.done():
                    self.answered += 1
                else:
                    pending.append(call)
            self.calls = pending
            horizon = time.monotonic() - keep_s
            for frame_id in [f for f, (at, _, _) in self.sent.items() if at < horizon]:
                del self.sent[frame_id]
                self._answered.discard(frame_id)

    def call(self, name: str, request) -> None:
        self.requests += 1
        self.calls.append(self.clients[name].call_async(request))

    def action(self, n: int, rgb: np.ndarray) -> None:
        """Once a second, the next thing a user, a detector or an attacker does."""
        height, width = rgb.shape[:2]
        kind = n % 8
        if kind in (0, 4):  # a new object from a box
            box = [width * 0.25, height * 0.2, width * 0.6, height * 0.9]
            self.call("add_objects", AddObjects.Request(prompts=[Prompt(object_id=-1, box=box)]))
        elif kind in (1, 5):  # a correction click on object 1 (refused when it is not tracked)
            self.probe.prompts.publish(Prompt(object_id=1, points=[Point32(x=width / 2, y=height / 2)],
                                              point_labels=[1]))
        elif kind == 2:
            self.call("remove_object", RemoveObject.Request(object_id=2))
        elif kind == 3:
            self.probe.camera.publish(_bad_image(n // 8 % 3, Header(frame_id="bad")))
        elif kind == 6:
            self.probe.prompts.publish(_hostile_prompt(n // 8 % 3))
        elif n % 24 == 7:
            self.call("reset", Trigger.Request())

    def run(self, minutes: float, progress: bool = True) -> None:
        frames, period = _frames(), 1.0 / CAMERA_HZ
        start = time.monotonic()
        deadline, next_at, next_action = start + minutes * 60, start, start + 1.0
        process = psutil.Process()
        bar = tqdm(total=round(minutes * 60), desc="soak", unit="s", disable=not progress)
        for count in itertools.count():
            now = time.monotonic()
            if now >= deadline:
                break
            size = SIZES[int((now - start) // SIZE_PERIOD_S) % len(SIZES)]
            self.publish(f"soak {count}", frames[size])
            if now >= next_action:
                self.action(int(now - start), frames[size])
                self.absorb()
                self.rss.append((now - start, process.memory_info().rss / 2**20))
                next_action += 1.0
                bar.update(1)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        bar.close()

    def report(self, settle_s: float = 60.0) -> dict:
        """Wait for the last answers, check the last results, and summarise."""
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and not all(call.done() for call in self.calls):
            time.sleep(0.05)
        self.absorb(keep_s=settle_s * 10)
        latency = [ms for _, ms in sorted(self.latency)]
        fifth = max(1, len(latency) // 5)
        times, rss = (np.array(v) for v in zip(*self.rss))
        settled = times >= times[-1] * 0.25  # after start-up allocations
        slope = float(np.polyfit(times[settled] / 60, rss[settled], 1)[0]) if settled.sum() > 1 else 0.0
        stats = self.probe.node.counts()
        return {
            "soak_minutes": float(times[-1] / 60),
            "soak_frames": stats.processed,
            "soak_frames_skipped": stats.skipped,
            "soak_results": self.results,
            "soak_rss_mb_start": float(rss[0]), "soak_rss_mb_end": float(rss[-1]),
            "soak_rss_slope_mb_per_min": slope,
            "soak_latency_ms_p99_start": float(np.percentile(latency[:fifth], 99)) if latency else float("nan"),
            "soak_latency_ms_p99_end": float(np.percentile(latency[-fifth:], 99)) if latency else float("nan"),
            "soak_header_mismatches": self.mismatches,
            "soak_requests": self.requests,
            "soak_unanswered_requests": self.requests - self.answered,
            "soak_refusals": stats.rejected,
            "soak_failures": stats.failed,
        }


def soak(overrides: dict, minutes: float, progress: bool = True) -> dict:
    """Run the soak against a fresh in-process node; return its JSON keys."""
    with NodeProbe({**overrides, "image_qos": "reliable"}) as probe:
        run = Soak(probe)
        run.run(minutes, progress)
        return run.report()
