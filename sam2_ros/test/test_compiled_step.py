"""The compiled tracking step: every shape compiled while loading, none while tracking, masks as the eager step's."""
import functools

import numpy as np
import pytest
import torch
import torch._dynamo.utils

from conftest import SMALL
from rosharness import Running, add, box_prompt, header
from sam2_ros.core.compiled_step import CompiledStep, compiled, group_sizes
from sam2_ros.core.model import ModelSpec, load_model
from sam2_ros.core.networks.memory_attention import MemorySlots
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.tools.scenes import object_box, pan_clip
from test_tracker import run_ours


def test_groups_are_stepped_in_powers_of_two_up_to_the_largest():
    assert group_sizes(1) == (1,)
    assert group_sizes(3) == (1, 2, 3)
    assert group_sizes(10) == (1, 2, 4, 8, 10)
    assert group_sizes(16) == (1, 2, 4, 8, 16)



def test_a_compiled_function_keeps_a_graph_for_each_of_ten_shapes(monkeypatch):
    """Dynamo keeps 8 graphs per function unless told otherwise: 16 objects in two memory sizes are 10 shapes.

    Dynamo decides what is a new graph; its graphs run eagerly here, sparing ten C++ builds of the same kernel.
    """
    def step(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * 2 + 1
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    run = compiled(step, mode=None)
    shapes = [(n, 3) for n in range(1, 11)]
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for shape in shapes:
        run(torch.ones(shape))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs - before == 10, "one graph per shape, the ninth and tenth too"
    for shape in shapes:  # every shape again: each has its graph, none runs eagerly or compiles anew
        torch.testing.assert_close(run(torch.full(shape, 0.5)), torch.tanh(torch.full(shape, 0.5)) * 2 + 1)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    assert torch._dynamo.config.recompile_limit == 8, "the process's own limit is left as it was"



def test_outputs_are_copies_where_cuda_graphs_would_overwrite_them():
    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.view(-1)
    x = torch.arange(6.0).reshape(2, 3)
    assert compiled(flat, mode=None)(x).data_ptr() == x.data_ptr(), "a view, as eager gives"
    copy = compiled(flat, mode=None, copy_outputs=True)(x)
    assert copy.data_ptr() != x.data_ptr() and copy.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_memory_is_padded_to_whole_frames_of_its_bucket_and_pointers_to_their_cap_with_the_padding_masked():
    slots = MemorySlots(frame_tokens=2, frame_buckets=(3, 5), pointer_tokens=4)
    memory = torch.arange(1.0, 7.0).reshape(6, 1, 1)  # 2 frames of 2 tokens (1..4), then 2 pointer tokens (5, 6)
    padded, pos, mask, pointers = slots.pad(memory, -memory, 2)
    assert padded.reshape(-1).tolist() == [1, 2, 3, 4, 0, 0, 5, 6, 0, 0] and pointers == 4
    assert pos.reshape(-1).tolist() == [-1, -2, -3, -4, 0, 0, -5, -6, 0, 0]
    assert mask.shape == (1, 1, 1, 10)
    assert mask.reshape(-1).tolist() == [True] * 4 + [False] * 2 + [True] * 2 + [False] * 2
    four_frames = torch.ones(8 + 2, 1, 1)
    assert slots.pad(four_frames, four_frames, 2)[0].shape[0] == 5 * 2 + 4, "the next bucket"
    assert slots.pad(torch.ones(12 + 2, 1, 1), torch.ones(14, 1, 1), 2) is None, "more frames than any bucket"
    assert slots.pad(torch.ones(4 + 6, 1, 1), torch.ones(10, 1, 1), 6) is None, "more pointers than the cap"


def assert_padding_changes_nothing(attention, frame_tokens: int, query_tokens: int, cases, batch: int = 1) -> None:
    """The memory attention on (frames, pointer tokens) of random memory: padded and masked as unpadded."""
    slots = MemorySlots(frame_tokens=frame_tokens, frame_buckets=(7, 14), pointer_tokens=92,
                        layers=attention.masked_layers)
    generator = torch.Generator().manual_seed(0)
    curr, curr_pos = (torch.randn(query_tokens, batch, 256, generator=generator) for _ in range(2))
    try:
        attention.slots = slots
        for frames, pointer_tokens in cases:
            memory, memory_pos = (torch.randn(frames * frame_tokens + pointer_tokens, batch, 64, generator=generator)
                                  for _ in range(2))
            with torch.inference_mode():
                slots.on = False
                unpadded = attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=pointer_tokens)
                slots.on = True
                padded = attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=pointer_tokens)
            torch.testing.assert_close(padded, unpadded, atol=1e-5, rtol=1e-5)
    finally:
        attention.slots = None


def test_padded_memory_attention_equals_metas_unpadded_on_real_layers(small_model):
    """SAM 2.1 tiny's memory attention, as Meta computes it, against the padded and masked path, on random inputs."""
    assert_padding_changes_nothing(small_model.sam.memory_attention, 256, 256,
                                   ((1, 4), (5, 40), (7, 64), (9, 92)), batch=2)


def clip_actions(truths):
    """40 frames: one object, a second added late, the first removed, a third added, the second corrected."""
    h, w = truths[0].shape
    return {0: [("prompt", Prompt(object_id=1, box=object_box(truths[0])))],
            6: [("prompt", Prompt(object_id=2, points=np.array([[w * 0.8, h * 0.25]]), point_labels=np.array([1])))],
            15: [("remove", 1)],
            18: [("prompt", Prompt(object_id=3, box=object_box(truths[18])))],
            27: [("prompt", Prompt(object_id=2, points=np.array([[w * 0.78, h * 0.3]]), point_labels=np.array([1])))]}


def test_forty_frames_with_objects_added_removed_and_corrected_compile_nothing_after_loading(checkpoint):
    """Two objects at most and two prompted frames each: group sizes 1 and 2, memory of 7 or 8 frames."""
    compiled = load_model(ModelSpec(checkpoint=checkpoint, device="cpu", image_size=SMALL, compile=True))
    tracker = StreamingTracker(compiled, max_objects=2, max_cond_frames=2)  # compiles every shape now
    assert compiled.compiled.warmed == [(1, 2), (2, 2)]
    compiled_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    step, used = compiled.compiled, []
    for part in (*step.switches, step.slots):  # a spy on each compiled callable: tracking must go through them
        attribute = "compiled" if part is not step.slots else "layers"
        real = getattr(part, attribute)
        setattr(part, attribute, lambda *a, real=real, **k: (used.append(real), real(*a, **k))[1])
    images, truths = pan_clip(40)
    actions = clip_actions(truths)
    ours = run_ours(compiled, images, actions, tracker=tracker)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiled_before, "a graph compiled mid-stream"
    assert len({id(f) for f in used}) == len(step.switches) + 1, "every compiled part ran while tracking"

    eager = load_model(ModelSpec(checkpoint=checkpoint, device="cpu", image_size=SMALL))
    reference = run_ours(eager, images, actions, tracker=StreamingTracker(eager, max_objects=2, max_cond_frames=2))
    assert [sorted(ours[t]) for t in range(40)] == [sorted(reference[t]) for t in range(40)]
    assert sorted(ours[10]) == [1, 2] and sorted(ours[20]) == [2, 3]
    worst = min(np.mean(ours[t][i] == reference[t][i]) for t in range(40) for i in ours[t])
    assert worst >= 0.999, f"compiled masks agree with eager ones on {worst:.4%} of pixels"


@pytest.mark.parametrize("objects, expected", [(1, 1), (2, 2), (3, 4)])
def test_a_group_is_padded_to_the_next_compiled_size(objects, expected):
    step = CompiledStep(switches=[], slots=None, sizes=(1, 2, 4))
    assert step.group_size(objects) == expected and step.group_size(5) == 5, "past the largest: as it is"


def test_a_group_padded_with_copies_of_its_last_object_tracks_as_the_unpadded_batch(small_model):
    """Eager modules, groups of 2 and 3 padded to 4: the copies' outputs are dropped, the real objects' kept."""
    images, truths = pan_clip(8)
    h, w = truths[0].shape
    actions = {0: [("prompt", Prompt(object_id=i + 1, points=np.array([[w * (0.2 + 0.25 * i), h * 0.5]]),
                                     point_labels=np.array([1]))) for i in range(3)],
               4: [("remove", 2)]}
    padded = StreamingTracker(small_model, max_objects=4, step=CompiledStep(switches=[], slots=None, sizes=(1, 4)))
    ours = run_ours(small_model, images, actions, tracker=padded)
    reference = run_ours(small_model, images, actions, batch_objects=True)
    for t in range(8):
        assert sorted(ours[t]) == sorted(reference[t]) == ([1, 2, 3] if t < 4 else [1, 3]), t
        for i in ours[t]:
            assert np.mean(ours[t][i] == reference[t][i]) >= 0.9999, (t, i)



def test_a_node_with_compile_compiles_every_shape_while_it_configures_and_none_on_camera_frames(checkpoint):
    running = Running(checkpoint, compile=True, max_objects=2, max_cond_frames=2)  # active once configured
    try:
        assert running.node.model.compiled.warmed == [(1, 2), (2, 2)]
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        images, truths = pan_clip(3)
        running.peer.publish_rgb(images[0], header(1))
        running.peer.result_for(header(1))
        assert add(running, box_prompt(object_box(truths[0]), header(1))).success
        for t in (1, 2):
            running.peer.publish_rgb(images[t], header(1 + t))
            assert [o.object_id for o in running.peer.result_for(header(1 + t)).objects] == [1]
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == before
    finally:
        running.close()
