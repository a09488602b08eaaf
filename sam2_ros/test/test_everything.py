"""Segment everything on an encoded frame equals Meta's SAM2AutomaticMaskGenerator.generate on the image."""
import inspect
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

from conftest import photo
from sam2_ros.core.encoding import encode
from sam2_ros.core.everything import Everything, EverythingSettings

# every proposal kept: random weights give every point about the same box, which NMS would cut to one
LOOSE = EverythingSettings(points_per_side=8, points_per_batch=16, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                           box_nms_thresh=1.0)


def meta_generate(model, image, settings: EverythingSettings, points_per_call: int | None = None) -> list[dict]:
    """Meta's generator as users call it: it encodes the image itself, and decodes points_per_batch at a time.

    Its output depends on that number by float rounding (small matrix products round differently), so
    where ours decodes fewer points per call (`points_per_call`), Meta's is asked to do the same.
    """
    if points_per_call is not None:
        settings = replace(settings, points_per_batch=points_per_call)
    generator = SAM2AutomaticMaskGenerator(model.sam, **asdict(settings))
    side = model.image_size // 16  # Meta hard-codes feature sizes for 1024 inputs
    generator.predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
    return generator.generate(image)


def assert_same(ours, theirs):
    assert len(ours) == len(theirs) > 0
    for mine, record in zip(ours, theirs):  # same order: Meta's NMS order
        np.testing.assert_array_equal(mine.mask, record["segmentation"])
        assert mine.box == tuple(record["bbox"]) and mine.point == tuple(record["point_coords"][0])
        assert mine.score == record["predicted_iou"] and mine.stability == record["stability_score"]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_masks_boxes_and_scores_equal_metas_generator_in_its_order(small_model, name):
    image = photo(name)
    ours, _ = Everything(small_model, LOOSE).propose(encode(small_model, image))
    assert_same(ours, meta_generate(small_model, image, LOOSE))
    assert [p.object_id for p in ours] == list(range(1, len(ours) + 1)) and ours[0].label == "unknown"


@pytest.mark.parametrize("chunk", [1, 4])
def test_a_few_points_per_decoder_call_equal_meta_decoding_as_many(small_model, chunk):
    image = photo("astronaut")  # 4 batches of 16 points (4 steps), each decoded 1 or 4 points at a time
    ours, _ = Everything(small_model, LOOSE, decode_chunk=chunk).propose(encode(small_model, image))
    assert len({p.point for p in ours}) == 8 * 8, "every point of the 8 x 8 grid decoded"
    assert_same(ours, meta_generate(small_model, image, LOOSE, points_per_call=chunk))


def test_overlapping_proposals_are_suppressed_as_metas_nms_suppresses_them(small_model):
    image = photo("rocket")
    settings = replace(LOOSE, box_nms_thresh=0.99)
    theirs = meta_generate(small_model, image, settings)
    assert 1 < len(theirs) < 3 * 8 * 8, "some of the 192 proposals kept, some suppressed"
    ours, _ = Everything(small_model, settings).propose(encode(small_model, image))
    assert_same(ours, theirs)


def test_on_the_cpu_a_chunk_holds_about_8192_image_tokens(small_model, full_model):
    assert Everything(small_model, EverythingSettings()).chunk() == 32  # 256: 16 x 16 tokens per point
    assert Everything(small_model, LOOSE).chunk() == 16  # never more than a batch
    assert Everything(full_model, LOOSE).chunk() == 2  # 1024: 64 x 64
    assert Everything(full_model, LOOSE, decode_chunk=7).chunk() == 7
    with pytest.raises(ValueError, match="decode_chunk must be at least 1 point, got 0"):
        Everything(small_model, LOOSE, decode_chunk=0)


def test_metas_default_thresholds_too(small_model):
    image = photo("rocket")
    settings = EverythingSettings(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ours, _ = Everything(small_model, settings).propose(encode(small_model, image))
    assert_same(ours, meta_generate(small_model, image, settings))
    strict = EverythingSettings(points_per_side=8)  # 0.8 / 0.95: random weights pass few or none
    found, _ = Everything(small_model, strict).propose(encode(small_model, image))
    expected = meta_generate(small_model, image, strict)
    assert len(found) == len(expected)
    if expected:
        assert_same(found, expected)


def test_at_full_input_size_too(full_model):
    image = photo("coffee")
    settings = EverythingSettings(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ours, _ = Everything(full_model, settings).propose(encode(full_model, image))  # on the CPU 2 points per call
    assert_same(ours, meta_generate(full_model, image, settings, points_per_call=2))


def test_one_encoding_serves_several_runs_and_bad_settings_are_refused(small_model):
    image = photo("chelsea")
    frame = encode(small_model, image)
    everything = Everything(small_model, LOOSE)
    first, _ = everything.propose(frame)
    again, _ = everything.propose(frame)
    assert [p.box for p in first] == [p.box for p in again]
    with pytest.raises(ValueError, match="pred_iou_thresh must be within 0..1, got 1.5"):
        Everything(small_model, EverythingSettings(pred_iou_thresh=1.5))
    with pytest.raises(ValueError, match="crop_n_layers 1: crops re-encode every crop"):
        Everything(small_model, LOOSE, crop_n_layers=1)


def test_a_pass_spread_over_several_steps_finds_what_one_call_finds(small_model):
    image = photo("astronaut")
    frame = encode(small_model, image)
    everything = Everything(small_model, LOOSE)  # 64 points in batches of 16: 4 steps
    run = everything.start(frame)
    assert run.remaining == 4
    steps = [run.step(1) for _ in range(4)]
    assert steps[:3] == [None, None, None] and run.remaining == 0
    assert_same(steps[3], meta_generate(small_model, image, LOOSE))


def test_a_pass_in_time_slices_yields_after_every_decoder_call_and_finds_what_one_call_finds(small_model):
    """A slice of 0 s still decodes one call: the camera gets a turn after each, and the pass ends."""
    image = photo("astronaut")
    run = Everything(small_model, LOOSE).start(encode(small_model, image))  # 64 points, 4 batches
    slices = 1
    while (proposals := run.step_for(0.0)) is None:
        slices += 1
    assert slices >= 4 and run.remaining == 0
    assert_same(proposals, meta_generate(small_model, image, LOOSE))


def test_a_limited_pass_keeps_metas_best_proposals_only(small_model):
    image = photo("astronaut")
    everything = meta_generate(small_model, image, LOOSE)
    assert len(everything) > 2
    run = Everything(small_model, LOOSE).start(encode(small_model, image), limit=2)
    assert_same(run.step(len(run.batches)), everything[:2])


def test_a_proposal_is_new_unless_mostly_on_a_taken_mask_and_big_enough_best_first():
    from sam2_ros.core.everything import Proposal, novel

    def square(x0, y0, x1, y1):
        mask = np.zeros((100, 100), bool)
        mask[y0:y1, x0:x1] = True
        return Proposal(object_id=0, mask=mask, score=0.9, stability=0.9, box=(x0, y0, x1 - x0, y1 - y0),
                        point=(x0, y0))
    tracked = square(0, 0, 40, 40).mask
    on_tracked = square(10, 10, 30, 30)  # 400 px, all on the tracked object
    half_on = square(20, 0, 60, 40)  # 1600 px, 800 (exactly half) on it: not more than half, so new
    on_half = square(30, 0, 70, 40)  # 1600 px, 1200 on half_on (accepted just before): covered
    speck = square(90, 90, 95, 95)  # 25 px: below min_area
    far = square(60, 60, 90, 90)  # 900 px, nothing under it
    least = square(90, 40, 100, 50)  # 100 px: exactly min_area, so big enough
    found = novel([on_tracked, half_on, on_half, speck, far, least], [tracked], min_area=100, max_overlap=0.5,
                  room=6)
    assert found == [half_on, far, least]
    assert novel([on_tracked, half_on, on_half, speck, far], [tracked], 100, 0.5, room=1) == [half_on]


def test_the_defaults_are_metas_automatic_mask_generators_own():
    """Read from Meta's signature, not restated: the settings, and the node's parameter defaults."""
    from sam2_ros.core.settings import EverythingParams
    meta = {k: v.default for k, v in inspect.signature(SAM2AutomaticMaskGenerator.__init__).parameters.items()}
    ours = EverythingSettings()
    for name in ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                 "stability_score_offset", "box_nms_thresh", "min_mask_region_area"):
        assert getattr(ours, name) == meta[name], name
    node = EverythingParams().settings()
    assert node == ours, "the node's everything_* parameter defaults are Meta's too"


@pytest.fixture(scope="module")
def graded_model(checkpoint):
    """The tiny network with its mask logits scaled 30x.

    Random weights give logits so close to 0 that every stability score is 0; scaled, they spread
    over 0.48..0.81, so the stability filter meets real values.
    """
    import torch

    from sam2_ros.core.model import ModelSpec, load_model
    model = load_model(ModelSpec(checkpoint=checkpoint, device="cpu", image_size=256))
    with torch.no_grad():
        for mlp in model.sam.sam_mask_decoder.output_hypernetworks_mlps:  # masks = hyper_in @ embedding
            mlp.layers[-1].weight.mul_(30.0)
            mlp.layers[-1].bias.mul_(30.0)
    return model


def test_the_stability_filter_on_graded_logits_equals_metas_generator(graded_model):
    image = photo("astronaut")
    frame = encode(graded_model, image)
    all_found, _ = Everything(graded_model, LOOSE).propose(frame)  # every point's three masks
    strict = replace(LOOSE, stability_score_thresh=0.7)
    kept, _ = Everything(graded_model, strict).propose(frame)
    assert_same(kept, meta_generate(graded_model, image, strict))
    expected = sorted(p.stability for p in all_found if p.stability >= 0.7)  # the filter, as a plain loop
    assert 0 < len(kept) < len(all_found) and sorted(p.stability for p in kept) == expected


def test_at_a_threshold_equal_to_a_masks_own_value_stability_keeps_it_and_predicted_iou_drops_it(graded_model):
    """Meta's rules at equality: stability_score >= stability_score_thresh, predicted_iou > pred_iou_thresh."""
    image = photo("astronaut")
    frame = encode(graded_model, image)
    found, _ = Everything(graded_model, LOOSE).propose(frame)  # every point's three masks
    stability_at = sorted(p.stability for p in found)[len(found) // 2]
    iou_at = sorted(p.score for p in found)[len(found) // 2]
    for at, expected, on_threshold, taken in (
            (replace(LOOSE, stability_score_thresh=stability_at),
             [p for p in found if p.stability >= stability_at], lambda p: p.stability == stability_at, True),
            (replace(LOOSE, pred_iou_thresh=iou_at),
             [p for p in found if p.score > iou_at], lambda p: p.score == iou_at, False)):
        kept, _ = Everything(graded_model, at).propose(frame)
        assert_same(kept, meta_generate(graded_model, image, at))
        assert sorted((p.score, p.stability) for p in kept) == sorted((p.score, p.stability) for p in expected)
        assert 0 < len(kept) < len(found) and any(on_threshold(p) for p in kept) == taken


def connected_components(mask):
    """What sam2's CUDA kernel computes (8-connected labels and each pixel's component area), by scipy."""
    from scipy import ndimage
    labels, counts = np.zeros(mask.shape, np.int32), np.zeros(mask.shape, np.int32)
    for i, plane in enumerate(mask.cpu().numpy()[:, 0].astype(bool)):
        found, _ = ndimage.label(plane, structure=np.ones((3, 3)))
        areas = np.bincount(found.ravel())
        labels[i, 0], counts[i, 0] = found, np.where(found > 0, areas[found], 0)
    return torch.as_tensor(labels), torch.as_tensor(counts)


@pytest.mark.parametrize("name, area", [("coffee", 10), ("astronaut", 30)])
def test_a_minimum_region_area_cleans_masks_as_metas_generator_does_with_sams_cuda_extension(
        small_model, monkeypatch, name, area):
    """Meta's generator fills holes and drops islands (low-resolution pixels) with sam2's CUDA kernel.

    Where that kernel is missing (this machine) Meta's skips the step; ours does it everywhere. The
    oracle: Meta's generator given the kernel's connected components by scipy.
    """
    import sam2.utils.misc
    image = photo(name)
    settings = EverythingSettings(points_per_side=8, points_per_batch=16, pred_iou_thresh=0.0,
                                  stability_score_thresh=0.0, box_nms_thresh=0.95, min_mask_region_area=area)
    ours, _ = Everything(small_model, settings).propose(encode(small_model, image))
    raw, _ = Everything(small_model, replace(settings, min_mask_region_area=0)).propose(encode(small_model, image))
    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components)
    assert_same(ours, meta_generate(small_model, image, settings))
    changed = sum(np.count_nonzero(a.mask != b.mask) for a, b in zip(ours, raw))
    assert changed > 1000, f"the clean-up changed {changed} pixels: a test of something"

