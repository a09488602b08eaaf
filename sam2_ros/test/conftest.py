"""Shared fixtures: seeded SAM 2 checkpoints in Meta's format, real photographs, ROS isolation."""
import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from sam2_ros.core.model import LoadedModel, ModelSpec, load_model, write_random_checkpoint


def ros_domain() -> int:
    """Return a DDS domain of this test process's own, so concurrent runs never see each other's topics.

    `make test` runs two workers (pytest -n 2): worker k takes the run's domain + k. The run's
    domain is ROS_DOMAIN_ID when set, else a random one (of 1, 5, ..., 97).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...: the workers of one run share a parent
    given = os.environ.get("ROS_DOMAIN_ID", "")
    run = random.Random(os.getppid() if worker else os.getpid())
    base = int(given) if given.isdigit() else 1 + 4 * run.randint(0, 24)
    return base + (int(worker[2:]) if worker else 0)


# Every ROS process of the tests stays on this machine and in a domain of its own.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(ros_domain())


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: CUDA-only behaviour, run by scripts/gpu_check.sh")
    # A thread that dies of an exception fails the test it ran in: a node's thread falling over is
    # a defect even when the test's own assertions pass (an executor shut down under a spinning thread
    # was found so)
    config.addinivalue_line("filterwarnings", "error::pytest.PytestUnhandledThreadExceptionWarning")


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SMALL = 256  # reduced input size that keeps most SAM 2 tests fast on a CPU


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """SAM 2.1 hiera tiny with seeded random weights, saved as Meta saves checkpoints."""
    return str(write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt", seed=0))


@pytest.fixture
def running(checkpoint):
    """A node on the seeded checkpoint, configured and active, with a peer that talks to it over ROS."""
    from rosharness import Running  # rclpy only where a test asks for a node
    harness = Running(checkpoint)
    yield harness
    harness.close()


@pytest.fixture(scope="session")
def graphs(tmp_path_factory, checkpoint):
    """Return (checkpoint, folder) of a model's seeded weights exported at the reduced size, once, by sam2_export."""
    from sam2_ros.tools.export import main as sam2_export

    made = {}

    def exported(name: str) -> tuple[str, Path]:
        if name not in made:
            folder = tmp_path_factory.mktemp(f"graphs_{name}")
            weights = checkpoint if name == "sam2.1_hiera_tiny" else \
                str(write_random_checkpoint(folder / f"{name}.pt", name=name, seed=0))
            code = sam2_export(["--model", name, "--checkpoint", weights, "--image-size", str(SMALL),
                                "--out", str(folder / "graphs")])
            assert code == 0, f"sam2_export of {name} failed"
            made[name] = (weights, folder / "graphs")
        return made[name]
    return exported


@pytest.fixture(scope="session")
def small_model(checkpoint) -> LoadedModel:
    return load_model(ModelSpec(checkpoint=checkpoint, device="cpu", image_size=SMALL))


@pytest.fixture(scope="session")
def full_model(checkpoint) -> LoadedModel:
    return load_model(ModelSpec(checkpoint=checkpoint, device="cpu"))


def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photographs as HxWx3 uint8 RGB."""
    return getattr(skimage.data, name)()


def fail_on_step(monkeypatch, tracker, call: int) -> None:
    """Fault injection: the tracker's `call`-th SAM 2 step from now raises, as CUDA out of memory would.

    On the reference path (one step per object), so that "the second object" means one.
    """
    monkeypatch.setattr(tracker, "batch_objects", False)
    fail_model_step(monkeypatch, tracker.model, call)


def fail_model_step(monkeypatch, model, call: int) -> None:
    """Fault injection: the model's `call`-th SAM 2 tracking step from now raises."""
    sam = model.sam
    real, calls = sam._track_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)
    monkeypatch.setattr(sam, "_track_step", step)


def slow_frames(monkeypatch, seconds: float) -> threading.Event:
    """Fault injection: tracking a frame takes `seconds` longer; the event says a frame is in flight."""
    from sam2_ros.core.tracker import StreamingTracker
    started, real = threading.Event(), StreamingTracker.track

    def track(*args, **kwargs):
        started.set()
        time.sleep(seconds)
        return real(*args, **kwargs)
    monkeypatch.setattr(StreamingTracker, "track", track)
    return started


def bench_suite(tmp_path, suite: str, checkpoint: str, *args: str, keys: set[str] = frozenset()) -> dict:
    """Run `sam2_bench --suite SUITE` on the CPU at input size 256; its JSON, which must hold `keys`."""
    import json

    from sam2_ros.tools.bench import main
    out = tmp_path / f"{suite}.json"
    assert main(["--suite", suite, "--checkpoint", checkpoint, "--device", "cpu", "--image-size", "256", *args,
                 "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert keys <= results.keys(), keys - results.keys()
    return results

