"""sam2_bench --suite backends: each graph's time is what a clock outside it measures, and the timer leaves no trace."""
import time

import pytest
import torch

from sam2_ros.core import backends
from sam2_ros.core.model import ModelSpec, load_model
from sam2_ros.tools.backends_bench import PartTimer, bench_backends


def test_each_graph_call_is_timed_under_its_name_and_the_graphs_are_untimed_afterwards(graphs):
    weights, folder = graphs("sam2.1_hiera_tiny")
    model = load_model(ModelSpec(checkpoint=weights, device="cpu", precision="float32", image_size=256,
                                 backend="onnxruntime", graphs=str(folder)))
    call = backends.Graph.__call__
    image = torch.zeros(1, 3, 256, 256)
    with PartTimer() as timer:
        start = time.perf_counter()
        for _ in range(2):
            model.sam.image_encoder(image)
        outside = (time.perf_counter() - start) * 1e3
    assert list(timer.spent) == ["image_encoder"] and len(timer.spent["image_encoder"]) == 2
    assert 0 < sum(timer.spent["image_encoder"]) <= outside
    assert backends.Graph.__call__ is call


def test_a_run_too_short_to_fill_the_memory_is_refused_before_anything_is_exported():
    with pytest.raises(ValueError, match="--model-frames must be over 8"):
        bench_backends(8, lambda: None)
