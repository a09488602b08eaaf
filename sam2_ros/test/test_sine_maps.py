"""Shared sine maps: Meta's numbers, the first call and every later one, with no copy per frame."""
import pytest
import torch
from sam2.modeling.position_encoding import PositionEmbeddingSine

from sam2_ros.core.networks.sine_maps import SharedSine


@pytest.mark.parametrize("batch, height, width", [(1, 64, 64), (3, 16, 32), (2, 7, 5)])
def test_every_call_gives_metas_map(batch, height, width):
    ours, metas = SharedSine(256), PositionEmbeddingSine(256)
    x = torch.zeros(batch, 8, height, width)
    for call in range(2):  # the first call builds the cache, the second reads it
        expected = metas(x)
        got = ours(x)
        assert got.shape == expected.shape == (batch, 256, height, width), call
        assert torch.equal(got, expected), f"call {call}"


def test_later_frames_get_views_of_one_map_not_copies():
    shared = SharedSine(64)
    first, second = shared(torch.zeros(1, 1, 32, 32)), shared(torch.zeros(4, 1, 32, 32))
    assert first.data_ptr() == second.data_ptr(), "every frame reads the one cached map"
    assert second.stride(0) == 0 and first[0].is_contiguous(), "batch expanded over the contiguous map"
