"""scripts/gpu_check.sh without a GPU: a dry run that says what it skipped and why, and exits 0.

And which carried wheels a machine with no package index installs (scripts/carried_wheels.py).
"""
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script runs for real (minutes)")
def test_the_gpu_check_runs_the_benchmark_alone_when_told_to_leave_the_tests_out(tmp_path):
    """GPU_TESTS=0: a machine lent for minutes spends one call on the figures, another on the tests.

    GPU_RESUME=1 over an earlier dry run's file: no steps were done there, so all would run.
    """
    (tmp_path / "gpu.json").write_text(json.dumps({"gpu": "skipped: CUDA not available"}))
    env = {**os.environ, "GPU_CHECK_BUILT": "1", "GPU_JSON": str(tmp_path / "gpu.json"), "GPU_FRAMES": "2",
           "GPU_TESTS": "0", "GPU_MODELS": "tiny", "GPU_RESUME": "1"}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test_gpu.py" not in done.stdout and "SKIPPED" not in done.stdout
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


def test_a_venv_from_carried_wheels_uses_this_pythons_torch_and_installs_only_what_it_lacks(tmp_path):
    """scripts/venv_from_wheels.sh as gpu_check.sh runs it on a machine with no package index."""
    package = tmp_path / "source"
    (package / "carried_demo").mkdir(parents=True)
    (package / "carried_demo" / "__init__.py").write_text("")
    (package / "pyproject.toml").write_text('[project]\nname = "carried-demo"\nversion = "1.0"\n')
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(wheels), str(package)], check=True, capture_output=True)
    # this Python has that very pytest: not a wheel at all, so installing it would fail the script
    (wheels / f"pytest-{pytest.__version__}-py3-none-any.whl").write_text("not a zip")
    venv = tmp_path / "venv"
    done = subprocess.run(["bash", "scripts/venv_from_wheels.sh", str(wheels)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable, "VENV": str(venv)}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "with 1 carried wheels" in done.stdout and (venv / ".installed").is_file()
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import carried_demo, pytest, torch\n"
                            "print(carried_demo.__file__, pytest.__file__, torch.__file__, sep='\\n')"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert Path(found[0]).is_relative_to(venv)  # installed from its wheel
    assert Path(found[1]) == Path(pytest.__file__) and Path(found[2]) == Path(torch.__file__)  # this Python's own
