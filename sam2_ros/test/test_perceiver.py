"""EdgeTAM's spatial perceiver: 512 tokens a memory frame, 2D latents that read their own window only."""
import pytest
import torch
from sam2.modeling.position_encoding import PositionEmbeddingSine

from sam2_ros.core.networks.family_parts import MEMORY_DIM, sine
from sam2_ros.core.networks.perceiver import SpatialPerceiver


@pytest.fixture(scope="module")
def perceiver() -> SpatialPerceiver:
    torch.manual_seed(0)
    return SpatialPerceiver(dim=MEMORY_DIM, position_encoding=sine(MEMORY_DIM)).eval()


@pytest.mark.parametrize("side", [16, 64])  # input size 256 and 1024
def test_a_memory_frame_becomes_512_tokens_in_sam2s_layout_at_any_size(perceiver, side):
    x, pos = torch.randn(2, MEMORY_DIM, side, side), torch.randn(2, MEMORY_DIM, side, side)
    with torch.inference_mode():
        out, out_pos = perceiver(x, pos)
    assert out.shape == out_pos.shape == (2, MEMORY_DIM, 1, 512) and perceiver.tokens == 512


def test_a_2d_latent_reads_its_own_window_and_the_global_latents_read_everything(perceiver):
    """64 x 64 map, 16 x 16 windows of 4 x 4: changing window (3, 5) changes 2D latent 3 * 16 + 5 alone."""
    torch.manual_seed(1)
    x, pos = torch.randn(1, MEMORY_DIM, 64, 64), torch.randn(1, MEMORY_DIM, 64, 64)
    changed = x.clone()
    changed[:, :, 12:16, 20:24] += 1.0  # rows 3*4.., columns 5*4..
    with torch.inference_mode():
        before, _ = perceiver(x, pos)
        after, _ = perceiver(changed, pos)
    moved = (before != after).any(dim=1)[0, 0]  # per token
    assert moved[:256].all(), "every global latent attends to the whole map"
    assert moved[256:].nonzero().flatten().tolist() == [3 * 16 + 5]  # the 2D latents, row by row


def test_global_latents_carry_no_position_and_2d_latents_the_sine_map_of_their_grid(perceiver):
    with torch.inference_mode():
        _, out_pos = perceiver(torch.randn(1, MEMORY_DIM, 32, 32), torch.randn(1, MEMORY_DIM, 32, 32))
    meta = PositionEmbeddingSine(num_pos_feats=MEMORY_DIM, normalize=True, temperature=10000)
    grid = meta(torch.zeros(1, MEMORY_DIM, 16, 16)).flatten(2)  # (1, C, 256): Meta's module on a 16 x 16 grid
    assert torch.equal(out_pos[0, :, 0, :256], torch.zeros(MEMORY_DIM, 256))
    torch.testing.assert_close(out_pos[0, :, 0, 256:], grid[0], rtol=0, atol=0)


def test_a_grid_of_2d_latents_must_be_square():
    with pytest.raises(ValueError, match="num_latents_2d must be a square, got 200"):
        SpatialPerceiver(num_latents_2d=200)
