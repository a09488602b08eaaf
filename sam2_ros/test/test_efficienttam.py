"""EfficientTAM equals what EfficientTAM's own code gave on the same seeded random weights.

Its code is not installable here, so its outputs were recorded by scripts/record_efficienttam.py
(how to rerun it is there) into data/efficienttam_reference.npz.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SMALL, photo
from families import FRAMES, clip_script, image_prompts, weights_digest, write_present_checkpoint
from sam2_ros.core.model import CheckpointError, ModelSpec, build_network, load_model
from sam2_ros.core.networks.efficienttam import VARIANTS as EFFICIENTTAM
from sam2_ros.core.segmenter import Segmenter
from sam2_ros.tools.scenes import pan_clip
from test_tracker import run_ours

RECORDED = Path(__file__).resolve().parent / "data" / "efficienttam_reference.npz"
ROUNDING = 1e-6  # a mask logit this close to 0 may fall on either side on another CPU
VARIANTS = ("efficienttam_s", "efficienttam_ti", "efficienttam_ti_1", "efficienttam_ti_2")


@pytest.fixture(scope="module")
def reference() -> dict:
    return dict(np.load(RECORDED))


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request, reference, tmp_path_factory):
    """(name, its model at input size 256), on the weights the reference was recorded with."""
    name = request.param
    path = write_present_checkpoint(tmp_path_factory.mktemp(name) / f"{name}.pt", name)
    if weights_digest(torch.load(path, weights_only=True)["model"]) != str(reference[f"{name}_weights"]):
        pytest.fail(f"the seeded {name} weights are not those the reference was recorded on: "
                    "rerun scripts/record_efficienttam.py")
    return name, load_model(ModelSpec(name=name, checkpoint=str(path), device="cpu", image_size=SMALL))


def unpacked(bits: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(bits, count=hw[0] * hw[1]).reshape(hw).astype(bool)


def assert_equal_but_rounding(obj, expected: np.ndarray, what: str) -> None:
    """Assert the mask is EfficientTAM's but where its logit is within float rounding of SAM 2's threshold.

    The reference was recorded on another CPU (AVX2) with other threads, whose kernels sum in another
    order: on an AVX-512 CPU, or on one thread, a pixel whose logit is 1e-8 from 0 can land on the other
    side (seen: 3 pixels of the clip's 180,000, logits -7.5e-08, 2.3e-09 and 2.3e-08).
    """
    differ = obj.mask != expected
    logits = F.interpolate(torch.as_tensor(obj.logits)[None], size=expected.shape, mode="bilinear",
                           align_corners=False)[0, 0].numpy()  # as the mask was thresholded
    assert np.all(np.abs(logits[differ]) < ROUNDING), (
        f"{what}: {np.count_nonzero(differ)} pixels differ from EfficientTAM's, logits there {logits[differ][:5]}")


@pytest.mark.parametrize("name", EFFICIENTTAM)
def test_every_published_variant_has_efficienttams_parameter_names_and_shapes(reference, name):
    theirs = json.loads(str(reference["layouts"]))[name]
    ours = {key: list(value.shape) for key, value in build_network(ModelSpec(name=name, image_size=SMALL))
            .state_dict().items()}
    assert ours == theirs


def test_single_images_equal_efficienttams_image_predictor(variant, reference):
    name, model = variant
    image = photo("astronaut")
    for k, (prompt, _) in enumerate(image_prompts(image)):
        ours = Segmenter(model).segment(image, [prompt]).objects[0]
        expected = unpacked(reference[f"{name}_image_mask_{k}"], image.shape[:2])
        assert_equal_but_rounding(ours, expected, f"{name} prompt {k}")
        assert ours.score == pytest.approx(float(reference[f"{name}_image_score_{k}"]), abs=1e-5)
        np.testing.assert_allclose(ours.logits[0], reference[f"{name}_image_logits_{k}"], atol=1e-4)


@pytest.mark.parametrize("batched", [False, True], ids=["one object per step", "objects batched"])
def test_a_30_frame_clip_with_an_object_added_late_and_a_correction_equals_efficienttams_video_predictor(
        variant, reference, batched):
    """Equal but where the mask's logit is within float rounding of SAM 2's threshold."""
    name, model = variant
    images, truths = pan_clip(FRAMES)
    ours = run_ours(model, images, clip_script(truths), batch_objects=batched, keep_objects=True)
    for t in range(FRAMES):
        recorded = {int(key.rsplit("_", 1)[1]) for key in reference if key.startswith(f"{name}_clip_{t}_")}
        assert set(ours[t]) == recorded, f"frame {t}"
        for object_id in recorded:
            expected = unpacked(reference[f"{name}_clip_{t}_{object_id}"], truths[t].shape)
            assert_equal_but_rounding(ours[t][object_id], expected, f"{name} object {object_id}, frame {t}")
    assert 0 < np.mean([ours[t][1].mask.mean() for t in range(FRAMES)]) < 1, "masks of the clip are not trivial"


def test_an_efficienttam_checkpoint_given_as_sam2_is_refused_naming_its_variants(tmp_path):
    path = write_present_checkpoint(tmp_path / "efficienttam_s.pt", "efficienttam_s")
    with pytest.raises(CheckpointError, match="set `model` to efficienttam_s, efficienttam_s_1, efficienttam_s_2 "
                                              "or efficienttam_s_512x512"):
        load_model(ModelSpec(name="sam2.1_hiera_tiny", checkpoint=str(path), device="cpu", image_size=SMALL))


def test_segment_everything_on_efficienttam_equals_metas_generator_on_it(variant):
    from test_everything import LOOSE, assert_same, meta_generate

    from sam2_ros.core.encoding import encode
    from sam2_ros.core.everything import Everything
    _, model = variant
    image = photo("coffee")
    ours, _ = Everything(model, LOOSE).propose(encode(model, image))
    assert_same(ours, meta_generate(model, image, LOOSE))


def test_the_node_runs_efficienttam_and_publishes_the_core_trackers_masks(tmp_path):
    from rosharness import Running, add, box_prompt, full_mask, header
    from sam2_ros.core.prompts import Prompt
    from sam2_ros.core.tracker import StreamingTracker
    from sam2_ros.tools.scenes import object_box
    path = str(write_present_checkpoint(tmp_path / "efficienttam_ti_1.pt", "efficienttam_ti_1"))
    model = load_model(ModelSpec(name="efficienttam_ti_1", checkpoint=path, device="cpu", image_size=SMALL))
    images, truths = pan_clip(4)
    core = StreamingTracker(model)
    running = Running(path, model="efficienttam_ti_1")
    try:
        running.peer.publish_rgb(images[0], header(1))
        running.peer.result_for(header(1))
        core.track(images[0])
        assert add(running, box_prompt(object_box(truths[0]), header(1))).success
        core.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
        for t in (1, 2, 3):  # from the third frame on, memory is averaged: two memory frames
            running.peer.publish_rgb(images[t], header(t + 1))
            (obj,) = running.peer.result_for(header(t + 1)).objects
            np.testing.assert_array_equal(full_mask(obj, truths[t].shape), core.track(images[t]).objects[0].mask)
    finally:
        running.close()
