"""The installed sam2_segmenter_node starts, loads its model, and stops cleanly on SIGINT."""
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from rclpy.executors import SingleThreadedExecutor

from conftest import photo
from rosharness import Peer, full_mask, header, wait_until
from sam2_ros.core.prompts import Prompt as CorePrompt
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.ros.conversions import image_to_array
from sam2_ros.ros.main import spin
from sam2_ros_interfaces.msg import Prompt


def executable(name: str) -> str:
    path = Path(get_package_prefix("sam2_ros")) / "lib" / "sam2_ros" / name
    assert path.is_file(), f"{name} is not installed at {path}: run colcon build"
    return str(path)


def start(*ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([executable("sam2_segmenter_node"), "--ros-args", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 60) -> list[str]:
    """Read the process's output until a line holds `text`; the deadline holds even if it prints nothing."""
    if not hasattr(process, "lines"):  # one reader thread per process: readline() blocks
        process.lines = queue.Queue()
        threading.Thread(target=lambda: [process.lines.put(line) for line in process.stdout], daemon=True).start()
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = process.lines.get(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
        except queue.Empty:
            if process.poll() is not None and process.lines.empty():
                break
            continue
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"'{text}' never printed in {timeout} s; output:\n{''.join(lines)}")


def output_until_exit(process: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    """Exit code and every line printed after the last wait_for_line."""
    code = process.wait(timeout=timeout)
    time.sleep(0.2)  # let the reader thread drain the closed pipe
    lines = []
    while not process.lines.empty():
        lines.append(process.lines.get())
    return code, "".join(lines)


def test_node_starts_with_its_params_file_and_exits_zero_on_sigint(checkpoint):
    params = Path(get_package_share_directory("sam2_ros")) / "config" / "sam2_segmenter.yaml"
    process = start("--params-file", str(params), "-p", f"checkpoint:={checkpoint}",
                    "-p", "device:=cpu", "-p", "image_size:=256")
    try:
        wait_for_line(process, "active")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_node_started_as_the_launch_file_starts_it_segments_a_remapped_camera_topic(checkpoint, small_model):
    """Reliable image QoS, as for bag replay: Fast DDS over loopback UDP (no shared memory)
    loses large best-effort images between processes.
    """
    params = Path(get_package_share_directory("sam2_ros")) / "config" / "sam2_segmenter.yaml"
    process = start("--params-file", str(params), "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu",
                    "-p", "image_size:=256", "-p", "image_qos:=reliable",
                    "-r", "image:=/camera/color/image_raw")
    rclpy.init()
    try:
        wait_for_line(process, "active")
        peer = Peer(image_topic="/camera/color/image_raw")
        prompts = peer.node.create_publisher(Prompt, "prompt", 10)
        spin = lambda: rclpy.spin_once(peer.node, timeout_sec=0.05)  # noqa: E731
        wait_until(lambda: spin() or (peer.camera.get_subscription_count() and prompts.get_subscription_count()),
                   30, "the node's subscriptions")
        image, first, second = photo("astronaut"), header(5), header(6)
        peer.publish_rgb(image, first)
        wait_until(lambda: spin() or any(r.header == first for r in peer.results), 60, "the first result")
        prompts.publish(Prompt(header=first, object_id=-1, label="person", box=[100.0, 50.0, 400.0, 480.0]))
        wait_until(lambda: spin() or any(r.objects for r in peer.results), 60, "the prompted result")
        peer.publish_rgb(image, second)
        result = wait_until(lambda: spin() or next((r for r in peer.results if r.header == second), None), 60,
                            "a tracked result")
        assert [(o.object_id, o.label) for o in result.objects] == [(1, "person")]
        core = StreamingTracker(small_model)
        core.track(image)
        core.add_prompt(CorePrompt(object_id=1, box=np.array([100.0, 50.0, 400.0, 480.0])))
        expected = core.track(image).objects[0].mask
        np.testing.assert_array_equal(full_mask(result.objects[0], image.shape[:2]), expected)
        label = wait_until(lambda: spin() or next((m for m in peer.masks if m.header == second), None), 30,
                           "the label image")
        np.testing.assert_array_equal(image_to_array(label) == 1, expected)
        peer.node.destroy_node()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        rclpy.shutdown()
        process.kill()


def test_a_missing_checkpoint_fails_configuration_with_the_loaders_message(tmp_path):
    process = start("-p", f"checkpoint:={tmp_path / 'absent.pt'}", "-p", "device:=cpu")
    try:
        lines = wait_for_line(process, "cannot configure")
        assert "checkpoint not found" in lines[-1] and "facebookresearch/sam2" in lines[-1]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_a_checkpoint_with_none_under_a_weight_fails_configuration_naming_the_key(checkpoint, tmp_path):
    """torch.load(weights_only=True) reads it; the node still refuses it in words, and stays up unconfigured."""
    import torch
    state = torch.load(checkpoint, weights_only=True)["model"]
    state["image_encoder.trunk.patch_embed.proj.weight"] = None
    torch.save({"model": state}, tmp_path / "odd.pt")
    process = start("-p", f"checkpoint:={tmp_path / 'odd.pt'}", "-p", "device:=cpu", "-p", "image_size:=256")
    try:
        lines = wait_for_line(process, "cannot configure")
        assert "holds NoneType (None) under 'image_encoder.trunk.patch_embed.proj.weight'" in lines[-1]
        assert not any("Traceback" in line for line in lines)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


@pytest.mark.parametrize("given, reason", [
    ("image_size:=150", "image_size must be a multiple of 32, got 150"),
    ("image_size:=abc", "Trying to set parameter 'image_size' to 'abc' of type 'STRING', expecting type 'INTEGER'"),
    ("score_threshold:=2.0", "Parameter score_threshold out of range"),
    ("mode:=follow", "mode 'follow' is not one of: track, image"),
])
def test_an_invalid_start_up_parameter_ends_the_process_with_exit_code_1_and_one_line_naming_it(
        checkpoint, given, reason):
    process = start("-p", f"checkpoint:={checkpoint}", "-p", given)
    try:
        lines = wait_for_line(process, "invalid parameter at start-up")
        code, rest = output_until_exit(process)
        assert code == 1 and reason in lines[-1] and "parameter file" in lines[-1]
        assert "Traceback" not in "".join(lines) + rest, "".join(lines) + rest
    finally:
        process.kill()


@pytest.mark.parametrize("given, reason", [
    (("--params-file", "/nonexistent/sam2.yaml"), "Couldn't parse params file: '--params-file /nonexistent/sam2.yaml'"),
    (("-p", "checkpoint"), "Couldn't parse parameter override rule: '-p checkpoint'"),
])
def test_a_parameter_file_or_rule_ros_cannot_read_ends_the_process_with_exit_code_1_and_one_line(given, reason):
    process = start(*given)
    try:
        lines = wait_for_line(process, "cannot start ROS")
        code, rest = output_until_exit(process)
        assert code == 1 and reason in lines[-1]
        assert "Traceback" not in "".join(lines) + rest, "".join(lines) + rest
    finally:
        process.kill()


def test_a_misspelt_start_up_parameter_is_named_with_the_one_meant_and_the_node_stays_up(checkpoint):
    """Undeclared overrides are dropped by rclpy without a word: imag_size:=512 would leave the default running."""
    process = start("-p", f"checkpoint:={checkpoint}", "-p", "imag_size:=512", "-p", "autostart:=false")
    try:
        lines = wait_for_line(process, "is not a parameter of this node")
        assert "'imag_size' is not a parameter of this node (did you mean 'image_size'?)" in lines[-1]
        assert "WARN" in lines[-1]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_a_lifecycle_shutdown_ends_the_process_with_exit_code_0(checkpoint):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    process = start("-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "image_size:=256")
    rclpy.init()
    try:
        wait_for_line(process, "active")
        manager = rclpy.create_node("lifecycle_manager")
        client = manager.create_client(ChangeState, "/sam2_segmenter_node/change_state")
        assert client.wait_for_service(timeout_sec=30)
        def change(transition: int, timeout: float):
            future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                rclpy.spin_once(manager, timeout_sec=0.05)
            return future.result() if future.done() else None
        # A transition not allowed while active is answered false and changes nothing. Asked until
        # an answer comes: a new client's first replies can be lost while DDS discovery completes.
        probe = next(filter(None, (change(Transition.TRANSITION_CONFIGURE, 2.0) for _ in range(15))), None)
        assert probe is not None and not probe.success
        answer = change(Transition.TRANSITION_ACTIVE_SHUTDOWN, 30.0)
        assert answer is not None and answer.success
        code, output = output_until_exit(process)
        assert code == 0, output
        manager.destroy_node()
    finally:
        rclpy.shutdown()
        process.kill()


def test_ctrl_c_while_a_frame_is_in_flight_exits_cleanly_without_an_error(checkpoint):
    """At input size 1024 a frame takes seconds on a CPU: SIGINT lands while SAM 2 works on it."""
    process = start("-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "image_size:=1024",
                    "-p", "image_qos:=reliable")
    rclpy.init()
    try:
        wait_for_line(process, "active")
        peer = Peer()
        wait_until(lambda: peer.camera.get_subscription_count(), 30, "the image subscription")
        peer.publish_rgb(photo("astronaut"), header(1))
        time.sleep(1.0)  # the frame is in the encoder (about 3 s here), not a wait for discovery
        process.send_signal(signal.SIGINT)
        code, output = output_until_exit(process)
        assert code == 0 and "ERROR" not in output and "context is invalid" not in output, output
        peer.node.destroy_node()
    finally:
        rclpy.shutdown()
        process.kill()


def test_ctrl_c_with_segment_everything_in_flight_ends_the_pass_and_the_process(checkpoint):
    """64 x 64 points with thresholds 0 is minutes of decoder work here: SIGINT ends it within a slice."""
    from sam2_ros_interfaces.srv import SegmentEverything
    process = start("-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "image_size:=256",
                    "-p", "image_qos:=reliable", "-p", "request_timeout_s:=600.0")
    rclpy.init()
    try:
        wait_for_line(process, "active")
        peer = Peer()
        spin = lambda: rclpy.spin_once(peer.node, timeout_sec=0.05)  # noqa: E731
        wait_until(lambda: spin() or peer.camera.get_subscription_count(), 30, "the image subscription")
        peer.publish_rgb(photo("astronaut"), header(1))
        wait_until(lambda: spin() or peer.results, 60, "the first result")
        client = peer.node.create_client(SegmentEverything, "/sam2_segmenter_node/segment_everything")
        assert client.wait_for_service(timeout_sec=30)
        answer = client.call_async(SegmentEverything.Request(points_per_side=64))
        deadline = time.monotonic() + 3.0  # the pass is running then: it needs minutes
        while time.monotonic() < deadline:
            spin()
        assert not answer.done()
        asked = time.monotonic()
        process.send_signal(signal.SIGINT)
        wait_until(lambda: spin() or answer.done(), 10, "the answer")
        took = time.monotonic() - asked  # the node stopped: the pass was ended and answered
        assert took < 1.0, f"the caller was answered {took:.2f} s after SIGINT"
        assert not answer.result().success and "node stopped" in answer.result().message
        code, output = output_until_exit(process)  # then Python and torch tear down (about 2 s here)
        assert code == 0 and "ERROR" not in output, output
        peer.node.destroy_node()
    finally:
        rclpy.shutdown()
        process.kill()


def test_help_lists_every_section_and_parameter_without_starting_ros(capsys):
    """--help is answered before rclpy.init: no context, no DDS participant, exit 0."""
    from sam2_ros.ros.main import main
    assert main(["sam2_segmenter_node", "--help"]) == 0 and not rclpy.ok()
    printed = capsys.readouterr().out
    assert printed.startswith("usage: ros2 run sam2_ros sam2_segmenter_node --ros-args -p checkpoint:=FILE.pt")
    for line in ("  model:", "    checkpoint ", "    image_size ", "    device ", "  depth:", "    depth_max_age_ms "):
        assert f"\n{line}" in printed, line


def test_spin_serves_callbacks_until_told_to_stop_and_its_executor_then_shuts_down_cleanly():
    """The thread ends on its own before shutdown(), so rclpy never pulls the wait set from under it."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("spin_helper_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    ticks, stop, failures = [], threading.Event(), []
    node.create_timer(0.01, lambda: ticks.append(time.monotonic()))
    spinner = threading.Thread(target=lambda: failures.extend(catch(spin, executor, stop.is_set)))
    spinner.start()
    wait_until(lambda: len(ticks) >= 5, 10, "five timer callbacks")
    stop.set()
    spinner.join(timeout=2)  # it asks `until` at least every 0.1 s
    assert not spinner.is_alive() and failures == []
    served = len(ticks)
    assert executor.shutdown(timeout_sec=1)
    time.sleep(0.05)
    assert len(ticks) == served  # nothing spins it any more
    node.destroy_node()
    rclpy.shutdown(context=context)


def catch(function, *args) -> list[BaseException]:
    """Run `function`; the exception it raised, if any (a thread's would otherwise be lost)."""
    try:
        function(*args)
    except BaseException as error:  # noqa: BLE001 - the test reports whatever it was
        return [error]
    return []
