"""SAM 2's memory attention, its first self-attention once a frame: Meta's numbers, fewer calls."""
import pytest
import torch
from sam2.modeling.memory_attention import MemoryAttention
from sam2.modeling.sam.transformer import RoPEAttention

from sam2_ros.core.networks.family_parts import ATTENTION, MEMORY_DIM, MODEL_DIM, memory_layer
from sam2_ros.core.networks.memory_attention import FrameMemoryAttention

SIDE, POINTERS = 8, 4  # an 8 x 8 frame; 4 object-pointer tokens after two memory frames


def layer():
    cross = RoPEAttention(rope_theta=10000.0, feat_sizes=(SIDE, SIDE), rope_k_repeat=True, kv_in_dim=MEMORY_DIM,
                          **ATTENTION)
    return memory_layer(SIDE, cross)


@pytest.fixture(scope="module")
def pair() -> tuple[FrameMemoryAttention, MemoryAttention]:
    torch.manual_seed(0)
    ours = FrameMemoryAttention(d_model=MODEL_DIM, pos_enc_at_input=True, layer=layer(), num_layers=2).eval()
    meta = MemoryAttention(d_model=MODEL_DIM, pos_enc_at_input=True, layer=layer(), num_layers=2).eval()
    meta.load_state_dict(ours.state_dict())
    return ours, meta


def inputs(objects: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    tokens = 2 * SIDE * SIDE + POINTERS
    return (torch.randn(SIDE * SIDE, objects, MODEL_DIM, generator=generator),
            torch.randn(tokens, objects, MEMORY_DIM, generator=generator),
            torch.randn(SIDE * SIDE, objects, MODEL_DIM, generator=generator),
            torch.randn(tokens, objects, MEMORY_DIM, generator=generator))


def test_outside_one_frame_every_call_is_metas(pair):
    ours, meta = pair
    curr, memory, curr_pos, memory_pos = inputs(2, seed=1)
    with torch.inference_mode():
        got = ours([curr], memory, [curr_pos], memory_pos, num_obj_ptr_tokens=POINTERS)
        want = meta([curr], memory, [curr_pos], memory_pos, num_obj_ptr_tokens=POINTERS)
    assert torch.equal(got, want)


def test_within_one_frame_the_first_self_attention_runs_once_for_every_objects_memory(pair, monkeypatch):
    ours, meta = pair
    curr, _, curr_pos, _ = inputs(1, seed=2)
    calls = []
    real = ours.layers[0]._forward_sa
    monkeypatch.setattr(ours.layers[0], "_forward_sa", lambda *args: calls.append(1) or real(*args))
    with torch.inference_mode(), ours.one_frame():
        for seed in (3, 4, 5):  # three objects, each with its own memory, on the same frame
            _, memory, _, memory_pos = inputs(1, seed)
            got = ours([curr], memory, [curr_pos], memory_pos, num_obj_ptr_tokens=POINTERS)
            assert torch.equal(got, meta([curr], memory, [curr_pos], memory_pos, num_obj_ptr_tokens=POINTERS))
        ours([curr.clone()], memory, [curr_pos], memory_pos, num_obj_ptr_tokens=POINTERS)  # equal, not the same
    assert len(calls) == 2, "once for the frame's tensors, once for a copy of them"


def test_a_batch_of_frames_and_memories_of_different_sizes_is_refused(pair):
    ours, _ = pair
    curr, memory, curr_pos, memory_pos = inputs(2, seed=6)
    with pytest.raises(ValueError, match="batch of 2 frames' features but 1 memories"):
        ours([curr], memory[:, :1], [curr_pos], memory_pos[:, :1], num_obj_ptr_tokens=POINTERS)
