"""A network's forward pass in slices: it computes only while stepped, one torch operation at least per step, gives
the whole pass's result, cancels cleanly, and leaves the caller's thread as it was.

The network is a small `transformers` Grounding DINO with seeded random weights (detectors.py).
"""
import time
from pathlib import Path

import pytest
import torch
from detectors import save_grounding_dino
from torch.overrides import _get_current_function_mode_stack as modes_on_this_thread

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
    while not run.step(0.0):  # a slice ends at the first torch operation after its time is spent
        steps += 1
        before = len(calls)
        time.sleep(0.001)
        assert len(calls) == before, "the pass computed while the caller had the turn"
        assert modes_on_this_thread() == []
    hook.remove()
    assert steps > len(list(detector.network.modules())), "fewer pauses than the network has modules"
    sliced = run.result()
    assert [(f.box.tolist(), f.score, f.phrase) for f in sliced] == [(f.box.tolist(), f.score, f.phrase) for f in whole]


def test_a_slice_ends_at_the_next_torch_operation_even_inside_one_function():
    done = []

    def ten_operations():
        x = torch.zeros(3)
        done.append(x)
        for _ in range(9):
            x = torch.add(x, 1)
            done.append(x)
        return x

    run = SlicedCall(ten_operations)
    progress = []
    while not run.step(0.0):
        progress.append(len(done))
    assert progress == list(range(10))  # the first step pauses before the first operation, then one per step
    assert run.result().tolist() == [9.0, 9.0, 9.0]


def test_a_cancelled_pass_ends_its_thread(folders, image):
    detector = load_detector(DetectorSpec(str(folders["grounding-dino"]), "cpu"))
    run = detector.start(image, PHRASES, 0.3, 0.25)
    assert not run.step(0.0)
    run.cancel()
    assert not run._thread.is_alive()
    assert modes_on_this_thread() == []


def test_a_pass_that_fails_raises_its_error_to_the_caller():
    run = SlicedCall(lambda: 1 / 0)
    assert run.step(1.0)
    with pytest.raises(ZeroDivisionError):
        run.result()


@pytest.mark.parametrize("mask_rows", [None, 1, 1300], ids=["no mask", "one mask row for all", "a row per query"])
def test_a_long_attention_pauses_between_blocks_of_query_rows_and_gives_the_same_rows(mask_rows):
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 4, n, 32, generator=generator) for n in (1300, 700, 700))
    mask = None if mask_rows is None else torch.rand(2, 1, mask_rows, 700, generator=generator) > 0.2
    whole = torch.nn.functional.scaled_dot_product_attention(query, key, value, mask)
    run = SlicedCall(lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value, mask))
    steps = 0
    while not run.step(0.0):
        steps += 1
    assert steps == 3  # before the call, then before the 2nd and 3rd blocks of 512 rows
    assert torch.equal(run.result(), whole)


def test_a_short_or_causal_attention_runs_whole():
    query = torch.randn(1, 1, 1300, 8)
    short = query[:, :, :1000]
    for call in (lambda: torch.nn.functional.scaled_dot_product_attention(short, query, query),
                 lambda: torch.nn.functional.scaled_dot_product_attention(query, query, query, is_causal=True)):
        run = SlicedCall(call)
        steps = 0
        while not run.step(0.0):
            steps += 1
        assert steps == 1
