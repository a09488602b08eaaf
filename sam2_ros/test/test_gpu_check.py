"""scripts/gpu_check.sh without a GPU: a dry run that says what it skipped and why, and exits 0."""
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
