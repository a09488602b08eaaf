"""One transfer to the host: every array comes back with its own dtype, shape and values."""
import numpy as np
import torch

from sam2_ros.core.transfer import packed_to_host, to_host


def test_packed_arrays_equal_each_tensor_copied_on_its_own():
    """Odd sizes, a bool array first and floats after it: each comes back from its own bytes."""
    masks = torch.rand(3, 5, 7) > 0.5
    logits = torch.randn(3, 1, 4, 4)
    scores = torch.tensor([0.25, 0.5, 0.75])
    ids = torch.tensor([[1, 2], [3, 4]], dtype=torch.int64)
    half = torch.tensor([1.5, -2.0], dtype=torch.float16)
    arrays = packed_to_host(masks, logits, scores, ids, half)
    for array, tensor in zip(arrays, (masks, logits, scores, ids, half)):
        expected = tensor.numpy()
        assert array.dtype == expected.dtype and array.shape == expected.shape
        np.testing.assert_array_equal(array, expected)


def test_a_non_contiguous_view_comes_back_as_its_values():
    masks = torch.rand(2, 1, 6, 6) > 0.3
    (packed,) = packed_to_host(masks[:, 0, ::2])
    np.testing.assert_array_equal(packed, masks[:, 0, ::2].numpy())


def test_on_the_cpu_nothing_is_copied():
    logits = torch.randn(2, 3)
    (array,) = to_host(logits)
    array[0, 0] = 42.0
    assert logits[0, 0] == 42.0, "a view of the tensor's own memory"
