"""CUDA-only behaviour, run by scripts/gpu_check.sh on a machine with a GPU (skipped elsewhere)."""
import numpy as np
import pytest
import torch

from conftest import photo
from rosharness import Running, header
from sam2_ros.core.model import ModelSpec, load_model, write_random_checkpoint
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.segmenter import Segmenter

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only: run scripts/gpu_check.sh")]

BOX = Prompt(object_id=1, box=np.array([100, 50, 400, 480], np.float32))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(np.count_nonzero(a | b), 1)


@pytest.fixture(params=["sam2.1_hiera_tiny", "edgetam", "efficienttam_s_2"])
def weights(request, checkpoint, tmp_path) -> tuple[str, str]:
    """(model, checkpoint) of each family."""
    if request.param == "sam2.1_hiera_tiny":
        return request.param, checkpoint
    return request.param, str(write_random_checkpoint(tmp_path / f"{request.param}.pt", name=request.param))


def test_bfloat16_autocast_masks_agree_with_float32(weights):
    image = photo("astronaut")
    name, checkpoint = weights
    masks = {precision: Segmenter(load_model(ModelSpec(name=name, checkpoint=checkpoint, device="cuda",
                                                       precision=precision, image_size=1024)))
             .segment(image, [BOX]).objects[0].mask for precision in ("float32", "bfloat16")}
    assert iou(masks["float32"], masks["bfloat16"]) > 0.95


def test_compiled_image_encoder_gives_the_uncompiled_masks(weights):
    """Inductor fuses and reorders float sums: logits within rounding of 0 may flip (59 of 262,144
    pixels on an H100 with random weights), so the masks agree on 99.9 % of pixels, not all.
    """
    image = photo("astronaut")
    name, checkpoint = weights
    masks = [Segmenter(load_model(ModelSpec(name=name, checkpoint=checkpoint, device="cuda", image_size=1024,
                                            compile=compiled))).segment(image, [BOX]).objects[0].mask
             for compiled in (False, True)]
    assert np.mean(masks[0] == masks[1]) >= 0.999


def test_deactivate_and_cleanup_hand_cuda_memory_back(checkpoint):
    """Deactivate keeps the model and the objects (activate resumes them) but empties the cache:
    a further empty_cache finds nothing to free. Cleanup drops the model: allocations go back.
    """
    torch.cuda.empty_cache()
    allocated_before = torch.cuda.memory_allocated()
    running = Running(checkpoint, device="cuda", image_size=1024)
    try:
        running.peer.publish_rgb(photo("coffee"), header(1))
        running.peer.result_for(header(1))
        running.node.trigger_deactivate()
        reserved = torch.cuda.memory_reserved()
        torch.cuda.empty_cache()
        assert torch.cuda.memory_reserved() == reserved, "deactivate left freeable CUDA cache behind"
        running.node.trigger_cleanup()
        left = torch.cuda.memory_allocated() - allocated_before
        assert left < 2 * 2**20, f"{left / 2**20:.1f} MB still allocated after cleanup"
    finally:
        running.close()


def test_batched_tracking_equals_the_reference_on_cuda(checkpoint):
    """CUDA's batched kernels round apart from single ones: masks within 0.01 % of pixels."""
    from sam2_ros.core.tracker import StreamingTracker
    from sam2_ros.tools.scenes import pan_clip
    model = load_model(ModelSpec(checkpoint=checkpoint, device="cuda", image_size=1024))
    images, _ = pan_clip(12)
    clicks = [Prompt(object_id=i + 1, points=np.array([[40.0 + 35 * i, 120.0]]), point_labels=np.array([1]))
              for i in range(8)]
    runs = []
    for batch in (True, False):
        tracker, masks = StreamingTracker(model, batch_objects=batch), []
        for t, image in enumerate(images):
            result = tracker.track(image)
            if t == 0:
                for prompt in clicks:
                    _, result = tracker.add_prompt(prompt)
            masks.append([o.mask for o in result.objects])
        runs.append(masks)
    for batched, reference in zip(*runs):
        for mine, theirs in zip(batched, reference, strict=True):
            assert np.mean(mine == theirs) >= 0.9999


def test_the_compiled_step_with_cuda_graphs_compiles_nothing_while_tracking_and_agrees_with_eager(weights):
    """bfloat16 (precision auto on a GPU with it), group sizes up to 4, 40 frames with objects added and removed.

    Compiled while loading on this thread, tracked on another, as the node's worker tracks: CUDA
    graph trees are kept per thread.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch._dynamo.utils

    from sam2_ros.core.tracker import StreamingTracker
    from sam2_ros.tools.scenes import pan_clip
    from test_compiled_step import clip_actions
    from test_tracker import run_ours
    name, checkpoint = weights
    images, truths = pan_clip(40)
    actions = clip_actions(truths)
    masks = {}
    for compiled in (False, True):
        model = load_model(ModelSpec(name=name, checkpoint=checkpoint, device="cuda", compile=compiled))
        assert model.spec.precision == ("bfloat16" if torch.cuda.get_device_capability() >= (8, 0) else "float32")
        tracker = StreamingTracker(model, max_objects=4)
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        with ThreadPoolExecutor(1) as worker:
            masks[compiled] = worker.submit(run_ours, model, images, actions, tracker=tracker).result()
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == before, "a graph compiled mid-stream"
    worst = min(np.mean(masks[True][t][i] == masks[False][t][i]) for t in range(40) for i in masks[False][t])
    assert worst >= 0.999, worst
