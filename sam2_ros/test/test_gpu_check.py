"""scripts/gpu_check.sh without a GPU: a dry run that says what it skipped and why, and exits 0.

And which carried wheels a machine with no package index installs (scripts/carried_wheels.py).
"""
import importlib.metadata
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script runs for real (minutes)")
def test_the_gpu_check_dry_runs_here_naming_what_it_skipped(tmp_path):
    env = {**os.environ, "GPU_CHECK_BUILT": "1", "GPU_JSON": str(tmp_path / "gpu.json"), "GPU_FRAMES": "2"}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no NVIDIA GPU here: a dry run" in done.stdout
    assert "available: False" in done.stdout
    assert "SKIPPED" in done.stdout and "CUDA only: run scripts/gpu_check.sh" in done.stdout
    assert json.loads((tmp_path / "gpu.json").read_text())["gpu"] == "skipped: CUDA not available"


def carried_wheels():
    """scripts/carried_wheels.py, imported from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("carried_wheels", ROOT / "scripts" / "carried_wheels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_carried_wheel_is_installed_unless_this_python_has_that_very_version(tmp_path):
    """The machine's own packages are kept where they are the pinned version; lark always comes last."""
    rclpy_version = importlib.metadata.version("ros-rclpy")  # installed here as ros-rclpy, carried as ros_rclpy
    names = [f"pytest-{pytest.__version__}-py3-none-any.whl", "pytest-0.0.1-py3-none-any.whl",
             f"ros_rclpy-{rclpy_version}-cp311-cp311-manylinux_2_28_x86_64.whl", "ros_rclpy-0.1-py3-none-any.whl",
             "not_installed_anywhere-1.0-py3-none-any.whl", "lark-1.3.1-py3-none-any.whl"]
    for name in names:
        (tmp_path / name).touch()
    chosen = {wheel.name for wheel in carried_wheels().missing(tmp_path)}
    assert chosen == {"pytest-0.0.1-py3-none-any.whl", "ros_rclpy-0.1-py3-none-any.whl",
                      "not_installed_anywhere-1.0-py3-none-any.whl"}
