"""A network's forward pass in slices: it computes only while stepped, gives the whole pass's result, cancels cleanly.

The network is a small `transformers` Grounding DINO with seeded random weights (detectors.py).
"""
import time
from pathlib import Path

import pytest
import torch
from detectors import save_grounding_dino

from conftest import photo
from sam2_ros.core.sliced import SlicedCall
from sam2_ros.core.text import DetectorSpec, load_detector

PHRASES = ("cup", "red ball")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {"grounding-dino": save_grounding_dino(tmp_path_factory.mktemp("detectors") / "gd")}


@pytest.fixture(scope="module")
def image():
    return photo("coffee")[:, :, :3].copy()


def test_a_sliced_pass_computes_only_while_stepped_and_gives_the_whole_passs_boxes(folders, image):
    detector = load_detector(DetectorSpec(str(folders["grounding-dino"]), "cpu"))
    with torch.inference_mode():
        whole = detector.detect(image, PHRASES, 0.3, 0.25)
    calls = []
    hook = detector.network.register_forward_pre_hook(lambda *_: calls.append(time.perf_counter()))
    run = detector.start(image, PHRASES, 0.3, 0.25)
    steps = 0
    while not run.step(0.0):  # a slice ends at the first module after its time is spent
        steps += 1
        before = len(calls)
        time.sleep(0.02)
        assert len(calls) == before, "the pass computed while the caller had the turn"
    hook.remove()
    assert steps > 5
    sliced = run.result()
    assert [(f.box.tolist(), f.score, f.phrase) for f in sliced] == [(f.box.tolist(), f.score, f.phrase) for f in whole]
    assert all(not m._forward_pre_hooks for m in detector.network.modules())


def test_a_cancelled_pass_ends_its_thread_and_leaves_no_hook(folders, image):
    detector = load_detector(DetectorSpec(str(folders["grounding-dino"]), "cpu"))
    run = detector.start(image, PHRASES, 0.3, 0.25)
    assert not run.step(0.0)
    run.cancel()
    assert not run._thread.is_alive()
    assert all(not m._forward_pre_hooks for m in detector.network.modules())


def test_a_pass_that_fails_raises_its_error_to_the_caller():
    run = SlicedCall(lambda: 1 / 0, torch.nn.Linear(1, 1))
    assert run.step(1.0)
    with pytest.raises(ZeroDivisionError):
        run.result()
