"""The installed sam2_segmenter_node starts, loads its model, and stops cleanly on SIGINT."""
import os
import signal
import subprocess
import time
from pathlib import Path

from ament_index_python.packages import get_package_prefix, get_package_share_directory


def executable(name: str) -> str:
    path = Path(get_package_prefix("sam2_ros")) / "lib" / "sam2_ros" / name
    assert path.is_file(), f"{name} is not installed at {path}: run colcon build"
    return str(path)


def start(*ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([executable("sam2_segmenter_node"), "--ros-args", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 60) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"'{text}' never printed; output:\n{''.join(lines)}")


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


def test_a_missing_checkpoint_fails_configuration_with_the_loaders_message(tmp_path):
    process = start("-p", f"checkpoint:={tmp_path / 'absent.pt'}", "-p", "device:=cpu")
    try:
        lines = wait_for_line(process, "cannot configure")
        assert "checkpoint not found" in lines[-1] and "facebookresearch/sam2" in lines[-1]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
