"""The launch file run as `ros2 launch` runs it: the real launch, launch_ros and ros2launch, where they are installed.

They cannot be installed in this repository's CI (no package index it reaches has them), so these
tests skip there; scripts/launch_check.sh runs them against checkouts of launch, launch_ros and
rcl_interfaces (Humble's, Jazzy's or rolling's), failing if any is skipped. Each launch is a
process of its own, started through ros2launch's `launch_a_launch_file` with `name:=value`
arguments, and the node it starts is looked at from outside over ROS, as a user would.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from hub_server import HubServer
from rcl_interfaces.srv import GetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import parameter_value_to_python
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from test_hub import TINY, fetch

from rosharness import header
from sam2_ros.ros.conversions import array_to_image
from sam2_ros_interfaces.msg import SegmentationResult
from test_main import output_until_exit, wait_for_line

pytest.importorskip("launch_ros", reason="launch_ros is not installed (scripts/launch_check.sh runs these tests)")
pytest.importorskip("ros2launch", reason="ros2launch is not installed (scripts/launch_check.sh runs these tests)")

ROS2_LAUNCH = """
import sys
from ros2launch.api import get_share_file_path_from_package, launch_a_launch_file
path = get_share_file_path_from_package(package_name="sam2_ros", file_name="sam2_segmenter.launch.py")
sys.exit(launch_a_launch_file(launch_file_path=path, launch_file_arguments=sys.argv[1:], noninteractive=True))
"""


def ros2_launch(*arguments: str, env: dict | None = None) -> subprocess.Popen:
    """`ros2 launch sam2_ros sam2_segmenter.launch.py ARGUMENTS` (ros2cli's verb calls the same function)."""
    return subprocess.Popen([sys.executable, "-c", ROS2_LAUNCH, *arguments], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


class Outside:
    """A node of its own beside the launched one: asks its parameters, reads its topics, sends camera frames."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("launch_file_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def until(self, done, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not (value := done()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)
        return value

    def parameters(self, node: str, names: list[str]) -> dict:
        client = self.node.create_client(GetParameters, f"{node}/get_parameters")
        self.until(client.service_is_ready, 30, f"{node}'s parameters")
        future = client.call_async(GetParameters.Request(names=names))
        self.until(future.done, 30, "the parameters")
        return {name: parameter_value_to_python(value) for name, value in zip(names, future.result().values)}

    def subscriptions(self, node: str) -> list[str]:
        namespace, name = node.rsplit("/", 1)
        return sorted(topic for topic, _ in self.node.get_subscriber_names_and_types_by_node(name, namespace or "/"))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def outside():
    probe = Outside()
    yield probe
    probe.close()


def stop(launch: subprocess.Popen) -> tuple[int, str]:
    """Ctrl-C, as a user ends `ros2 launch`: launch passes SIGINT on to the node and waits for it."""
    launch.send_signal(signal.SIGINT)
    return output_until_exit(launch, timeout=60)


def test_a_model_and_a_text_detector_fetched_by_name_launch_offline_namespaced_with_depth(tmp_path, checkpoint,
                                                                                          outside):
    """README's launch line with checkpoint:=auto and text_prompt, on a robot whose cache was filled by sam2_fetch."""
    from detectors import save_grounding_dino

    saved = save_grounding_dino(tmp_path / "saved")
    files = {TINY: Path(checkpoint).read_bytes(),
             **{("IDEA-Research/grounding-dino-tiny", f.name): f.read_bytes() for f in saved.iterdir()}}
    with HubServer(files) as hub:
        fetched = fetch(tmp_path / "hf", hub.url, "sam2.1_hiera_tiny", "grounding_dino_tiny")
    assert fetched.returncode == 0, fetched.stderr
    offline = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": hub.url}  # the hub is gone

    launch = ros2_launch("namespace:=left", "image:=/cam/color/image_raw", "depth:=/cam/depth/image_raw",
                         "checkpoint:=auto", "text_prompt:=cup . red ball", "image_size:=256", "device:=cpu",
                         env=offline)
    try:
        wait_for_line(launch, "active: listening on /cam/color/image_raw", timeout=120)
        node = "/left/sam2_segmenter_node"
        assert outside.parameters(node, ["checkpoint", "text_prompt", "depth", "image_size", "model", "image_qos"]) \
            == {"checkpoint": "auto", "text_prompt": "cup . red ball", "depth": True, "image_size": 256,
                "model": "sam2.1_hiera_tiny", "image_qos": "sensor_data"}  # the last two from the package's file
        assert {"/cam/color/image_raw", "/cam/color/camera_info", "/cam/depth/image_raw",
                "/cam/depth/camera_info", "/left/prompt"} <= set(outside.subscriptions(node))

        results, passes = [], []
        outside.node.create_subscription(SegmentationResult, f"{node}/result", results.append, 10)
        outside.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: passes.extend(
            int(v.value) for s in msg.status if s.name == "sam2_segmenter_node: processing"
            for v in s.values if v.key == "text passes"), 10)
        camera = outside.node.create_publisher(Image, "/cam/color/image_raw",
                                               QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        rgb = np.full((480, 640, 3), 90, np.uint8)
        rgb[120:300, 200:380] = (200, 40, 40)
        second = 0

        def frame_and_look():
            nonlocal second
            second += 1
            camera.publish(array_to_image(rgb, "rgb8", header(second)))
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                outside.executor.spin_once(timeout_sec=0.05)
            return results and passes and max(passes) >= 1

        outside.until(frame_and_look, 120, "a 640x480 result and a text detector pass")
        assert (results[-1].width, results[-1].height) == (640, 480)
    finally:
        code, output = stop(launch)
    assert code == 0, output
    assert "process has finished cleanly" in output and "text detector failed" not in output, output


@pytest.mark.parametrize("argument, message", [
    ("image_size:=big", "image_size:=big: use a whole number of pixels, such as 512"),
    ("compressed:=yes", "compressed:=yes: use true or false"),
])
def test_a_launch_argument_of_the_wrong_kind_stops_the_launch_before_anything_starts(checkpoint, argument, message):
    launch = ros2_launch(f"checkpoint:={checkpoint}", argument)
    output, _ = launch.communicate(timeout=60)
    assert launch.returncode == 1 and message in output, output
    assert "process started" not in output, output


def test_rviz_asked_for_where_rviz2_is_missing_stops_the_launch_before_the_node_starts(checkpoint):
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix("rviz2")
        pytest.skip("rviz2 is installed here")
    except PackageNotFoundError:
        pass
    launch = ros2_launch(f"checkpoint:={checkpoint}", "rviz:=true")
    output, _ = launch.communicate(timeout=60)
    assert launch.returncode == 1 and "rviz:=true, but package 'rviz2' is not installed" in output, output
    assert "process started" not in output, output
