"""Bags for the bag tools' tests: read back, restamped as drivers stamp them, a node started as the demo does."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
from ament_index_python.packages import get_package_prefix
from rosbags.rosbag2 import Reader

from sam2_ros.tools.bags import typestore
from sam2_ros.tools.make_sample_bag import IMAGE_TOPIC, PROMPT_TOPIC
from test_main import wait_for_line

FRAMES = 6


def messages(bag: Path) -> dict[str, list]:
    """Every message of a bag, deserialised with rosbags: topic -> [(log time, message)]."""
    store, found = typestore(), {}
    with Reader(bag) as reader:
        for connection, stamp, raw in reader.messages():
            found.setdefault(connection.topic, []).append((stamp, store.deserialize_cdr(raw, connection.msgtype)))
    return found


def start_node(checkpoint, *remaps: str, compressed: bool = False, depth: bool = False) -> subprocess.Popen:
    """sam2_segmenter_node started as the demo starts it, remapped onto the bag's topics."""
    exe = Path(get_package_prefix("sam2_ros")) / "lib" / "sam2_ros" / "sam2_segmenter_node"
    process = subprocess.Popen(
        [str(exe), "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "image_size:=256",
         "-p", "image_qos:=reliable", "-p", f"compressed:={str(compressed).lower()}",
         "-p", f"depth:={str(depth).lower()}",
         "-r", f"prompt:={PROMPT_TOPIC}", *(arg for remap in remaps for arg in ("-r", remap))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for_line(process, "active")
    return process


def stop_node(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)



@pytest.fixture
def bag_node(checkpoint):
    from sam2_ros.tools.make_sample_bag import DEPTH_INFO_TOPIC, DEPTH_TOPIC, INFO_TOPIC
    process = start_node(checkpoint, f"image:={IMAGE_TOPIC}", f"depth:={DEPTH_TOPIC}",
                         f"depth/camera_info:={DEPTH_INFO_TOPIC}", f"camera_info:={INFO_TOPIC}", depth=True)
    rclpy.init()
    yield process
    rclpy.shutdown()
    stop_node(process)


def write_output_bag(path: Path, sizes: list[tuple[int, int]]) -> None:
    """An output bag as sam2_replay writes it: frames (of the given sizes) and label images."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from sam2_ros.ros.conversions import array_to_image
    from sam2_ros.tools.bags import writer

    store = typestore()
    with writer(path) as bag:
        frames = bag.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        masks = bag.add_connection("/sam2_segmenter_node/mask", "sensor_msgs/msg/Image", typestore=store)
        for t, (width, height) in enumerate(sizes):
            header = Header(frame_id="camera")
            header.stamp.sec = t + 1
            labels = np.zeros((height, width), np.uint8)
            labels[: height // 2, : width // 2] = 1  # object 1: the top-left quarter
            grey = np.full((height, width, 3), 128, np.uint8)
            bag.write(frames, t + 1, serialize_message(array_to_image(grey, "rgb8", header)))
            bag.write(masks, t + 1, serialize_message(array_to_image(labels, "mono8", header)))


def with_a_corrupt_message(bag: Path, out: Path, corrupt_frame: int) -> None:
    """Copy a bag, the camera frame `corrupt_frame` replaced by bytes that are no Image."""
    from sam2_ros.tools.bags import writer
    frames = 0
    with Reader(bag) as reader, writer(out) as copy:
        connections = {c.id: copy.add_connection(c.topic, c.msgtype, typestore=typestore()) for c in reader.connections}
        for connection, stamp, raw in reader.messages():
            if connection.topic == IMAGE_TOPIC:
                frames += 1
                if frames == corrupt_frame:
                    raw = b"\x00\x01\x00\x00 not an image"
            copy.write(connections[connection.id], stamp, raw)


def peak_rss_mb(*command: str) -> float:
    """Peak resident memory of a command run in a child process, MiB (the kernel's own count)."""
    script = ("import resource, subprocess, sys\n"
              "code = subprocess.run(sys.argv[1:]).returncode\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)\n")
    done = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, timeout=600)
    peak, code = done.stdout.split()[-2:]
    assert code == "0", done.stderr
    return float(peak)


def with_stamps(bag: Path, out: Path, scenario: str, refused_frame: int | None = None) -> Path:
    """Copy a sample bag, every header stamp rewritten as a camera driver or a recording might have it.

    good: as made; zero: a driver that does not stamp; looped: the first 10 frames' stamps played
    twice; backward: from frame 10 on, the clock 10 s back (a simulator reset). Messages keep
    their order and log times. `refused_frame` (0-based) gets an encoding the node does not read.
    """
    from sam2_ros.tools.bags import writer
    store = typestore()
    frame_stamps: list[int] = []
    with Reader(bag) as reader:  # the camera frames' stamps, in bag order
        for connection, _, raw in reader.messages():
            if connection.topic == IMAGE_TOPIC:
                header = store.deserialize_cdr(raw, connection.msgtype).header
                frame_stamps.append(header.stamp.sec * 10**9 + header.stamp.nanosec)
    new = {"good": lambda t, ns: ns, "zero": lambda t, ns: 0,
           "looped": lambda t, ns: frame_stamps[t % 10], "backward": lambda t, ns: ns - 10**10 if t >= 10 else ns}
    moved = {ns: new[scenario](t, ns) for t, ns in enumerate(frame_stamps)}
    frames = 0
    with Reader(bag) as reader, writer(out) as copy:
        connections = {c.id: copy.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for connection, log_ns, raw in reader.messages():
            msg = store.deserialize_cdr(raw, connection.msgtype)
            ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(moved.get(ns, ns), 10**9)
            if connection.topic == IMAGE_TOPIC:
                if frames == refused_frame:
                    msg.encoding = "yuv999"
                frames += 1
            copy.write(connections[connection.id], log_ns, store.serialize_cdr(msg, connection.msgtype))
    return out


def reset(node_process) -> None:
    """Forget the node's objects between replays (~/reset), as a user would."""
    from std_srvs.srv import Trigger
    peer = rclpy.create_node("bag_test_peer")
    try:
        client = peer.create_client(Trigger, "/sam2_segmenter_node/reset")
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(peer, future, timeout_sec=30)
        assert future.result().success
    finally:
        peer.destroy_node()

