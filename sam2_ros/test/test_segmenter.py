"""Single-image segmentation equals Meta's SAM2ImagePredictor on the same weights and photos."""
import numpy as np
import pytest
from sam2.sam2_image_predictor import SAM2ImagePredictor

from conftest import PHOTOS, photo
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.segmenter import FrameNotCached, Segmenter


def meta_predictor(model, image) -> SAM2ImagePredictor:
    """Meta's predictor on our network. It hard-codes feature sizes for 1024-pixel inputs,
    so at another input size they are set to what that size gives.
    """
    predictor = SAM2ImagePredictor(model.sam)
    side = model.image_size // 16
    predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
    predictor.set_image(image)
    return predictor


def meta_presence(meta: SAM2ImagePredictor, normalised_points: np.ndarray, labels: np.ndarray) -> float:
    """SAM 2's object-presence probability on Meta's own image features: sigmoid(object_score_logits)."""
    import torch
    sam = meta.model
    coords = torch.as_tensor(normalised_points * sam.image_size, dtype=torch.float32)[None]
    with torch.inference_mode():
        *_, object_score_logits = sam._forward_sam_heads(
            backbone_features=meta._features["image_embed"],
            point_inputs={"point_coords": coords, "point_labels": torch.as_tensor(labels, dtype=torch.int32)[None]},
            high_res_features=meta._features["high_res_feats"], multimask_output=True)
    return float(torch.sigmoid(object_score_logits).reshape(-1)[0])


def assert_same(ours, masks, scores, logits):
    diff = np.count_nonzero(ours.mask != masks.astype(bool))
    assert diff == 0, f"{diff} pixels differ from Meta's mask"
    assert ours.score == pytest.approx(float(scores), abs=1e-5)
    np.testing.assert_allclose(ours.logits, logits, atol=1e-4)


@pytest.fixture(scope="module", params=PHOTOS)
def scene(request, small_model):
    image = photo(request.param)
    segmenter = Segmenter(small_model)
    segmenter.add_frame(request.param, image)
    return image, segmenter, meta_predictor(small_model, image)


def test_single_click_keeps_the_best_of_sam2s_three_masks_like_meta(scene):
    image, segmenter, meta = scene
    h, w = image.shape[:2]
    point, label = np.array([[w * 0.45, h * 0.55]]), np.array([1])
    masks, scores, logits = meta.predict(point_coords=point, point_labels=label, multimask_output=True)
    best = int(np.argmax(scores))
    ours = segmenter.predict([Prompt(object_id=1, points=point, point_labels=label)]).objects[0]
    assert_same(ours, masks[best], scores[best], logits[best:best + 1])
    assert ours.presence == pytest.approx(meta_presence(meta, point / [w, h], label), abs=1e-5)


def test_box_prompt_equals_meta(scene):
    image, segmenter, meta = scene
    h, w = image.shape[:2]
    box = np.array([w * 0.2, h * 0.15, w * 0.7, h * 0.8], np.float32)
    masks, scores, logits = meta.predict(box=box, multimask_output=False)
    assert_same(segmenter.predict([Prompt(object_id=1, box=box)]).objects[0], masks[0], scores[0], logits)


def test_points_with_a_box_equal_meta(scene):
    image, segmenter, meta = scene
    h, w = image.shape[:2]
    points, labels = np.array([[w * 0.5, h * 0.5], [w * 0.25, h * 0.3]]), np.array([1, 0])
    box = np.array([w * 0.1, h * 0.1, w * 0.8, h * 0.9], np.float32)
    masks, scores, logits = meta.predict(point_coords=points, point_labels=labels, box=box,
                                         multimask_output=False)
    ours = segmenter.predict([Prompt(object_id=3, points=points, point_labels=labels, box=box)])
    assert_same(ours.objects[0], masks[0], scores[0], logits)


def test_background_clicks_alone_equal_meta(scene):
    """A foreground click and two background clicks, as a Prompt message carries them ([1, 0, 0])."""
    image, segmenter, meta = scene
    h, w = image.shape[:2]
    points, labels = np.array([[w * 0.5, h * 0.5], [w * 0.2, h * 0.2], [w * 0.8, h * 0.7]]), np.array([1, 0, 0])
    masks, scores, logits = meta.predict(point_coords=points, point_labels=labels, multimask_output=False)
    ours = segmenter.predict([Prompt(object_id=1, points=points, point_labels=labels)]).objects[0]
    assert_same(ours, masks[0], scores[0], logits)
    flipped, _, _ = meta.predict(point_coords=points, point_labels=1 - labels, multimask_output=False)
    assert np.count_nonzero(flipped[0] != masks[0]), "the labels must matter for this comparison to mean anything"


def test_several_objects_in_one_batched_call_equal_metas_batched_prediction(scene):
    image, segmenter, meta = scene
    h, w = image.shape[:2]
    boxes = np.array([[w * 0.05, h * 0.1, w * 0.5, h * 0.6], [w * 0.4, h * 0.3, w * 0.95, h * 0.9],
                      [w * 0.2, h * 0.2, w * 0.4, h * 0.4]], np.float32)
    masks, scores, logits = meta.predict(box=boxes, multimask_output=False)
    ours = segmenter.predict([Prompt(object_id=i + 1, label=f"thing{i}", box=box)
                              for i, box in enumerate(boxes)])
    assert [o.object_id for o in ours.objects] == [1, 2, 3]
    assert [o.label for o in ours.objects] == ["thing0", "thing1", "thing2"]
    for i, obj in enumerate(ours.objects):
        assert_same(obj, masks[i, 0], scores[i, 0], logits[i])


def test_a_correction_fed_back_as_mask_logits_equals_metas_mask_input(scene):
    image, segmenter, meta = scene
    h, w = image.shape[:2]
    first = segmenter.predict([Prompt(object_id=1, box=np.array([0, 0, w / 2, h / 2]))]).objects[0]
    point, label = np.array([[w * 0.3, h * 0.3]]), np.array([0])
    masks, scores, logits = meta.predict(point_coords=point, point_labels=label,
                                         mask_input=first.logits, multimask_output=False)
    ours = segmenter.predict([Prompt(object_id=1, points=point, point_labels=label,
                                     mask_logits=first.logits)]).objects[0]
    assert_same(ours, masks[0], scores[0], logits)


def test_full_size_1024_input_equals_meta_and_the_cpu_decodes_two_boxes_per_call_there(full_model):
    image = photo("astronaut")
    meta = meta_predictor(full_model, image)
    boxes = np.array([[100, 50, 400, 480], [250, 0, 500, 250], [0, 300, 200, 511]], np.float32)
    # 64 x 64 image tokens per box: on the CPU SAM 2 gets two boxes, then one (LoadedModel.per_call);
    # Meta's predictor given them so rounds alike (a call of three may round a pixel apart)
    expected = [meta.predict(box=boxes[:2], multimask_output=False), meta.predict(box=boxes[2], multimask_output=False)]
    masks = np.concatenate([expected[0][0], expected[1][0][None]])
    scores = np.concatenate([expected[0][1], expected[1][1][None]])
    logits = np.concatenate([expected[0][2], expected[1][2][None]])
    ours = Segmenter(full_model).segment(image, [Prompt(object_id=i + 1, box=box) for i, box in enumerate(boxes)])
    for i, obj in enumerate(ours.objects):
        assert_same(obj, masks[i, 0], scores[i, 0], logits[i])
    assert ours.objects[0].logits.shape == (1, 256, 256)


def test_prompts_on_a_cached_frame_reuse_its_encoding(small_model):
    segmenter = Segmenter(small_model, cache_size=2)
    image = photo("coffee")
    first = segmenter.segment(image, [Prompt(object_id=1, box=np.array([10, 10, 200, 200]))], key=1)
    again = segmenter.segment(image, [Prompt(object_id=2, box=np.array([50, 50, 300, 300]))], key=1)
    assert first.encode_ms > 0 and again.encode_ms == 0.0
    assert segmenter.frame(1) is segmenter.frame(None)
    segmenter.segment(photo("rocket"), [Prompt(object_id=3, box=np.array([5, 5, 60, 60]))])  # one-off
    assert segmenter.frame(None) is segmenter.frame(1), "an image without a key must not be cached"


def test_the_frame_cache_is_bounded_and_says_which_frame_was_dropped(small_model):
    segmenter = Segmenter(small_model, cache_size=2)
    for key, name in enumerate(("coffee", "chelsea", "rocket")):
        segmenter.add_frame(key, photo(name))
    assert segmenter.frame(1).image_hw == photo("chelsea").shape[:2]
    with pytest.raises(FrameNotCached, match="frame 0 is not among the 2 most recent frames"):
        segmenter.predict([Prompt(object_id=1, box=np.array([1, 1, 50, 50]))], 0)


def test_a_kept_frame_holds_only_what_prompts_need_and_segments_as_when_fresh(small_model):
    segmenter = Segmenter(small_model, cache_size=2)
    image = photo("astronaut")
    fresh = segmenter.add_frame("now", image)
    prompts = [Prompt(object_id=1, box=np.array([100, 50, 400, 480])),
               Prompt(object_id=2, points=np.array([[250.0, 250.0]]), point_labels=np.array([1]))]
    expected = segmenter.predict(prompts, fresh).objects
    kept = segmenter.frame("now")
    assert kept.backbone is None, "the backbone's positional encodings are not kept"
    for ours, theirs in zip(segmenter.predict(prompts, "now").objects, expected):
        np.testing.assert_array_equal(ours.mask, theirs.mask)
        np.testing.assert_array_equal(ours.logits, theirs.logits)


def test_a_binary_mask_prompt_equals_metas_mask_input_of_that_mask_as_sam2_logits(scene):
    """Meta's image predictor takes only low-res logits: give it the mask downscaled by Pillow
    (an antialiased bilinear of its own) and mapped 0 -> -10, 1 -> +10 as SAM 2 maps masks.
    """
    from PIL import Image as PILImage
    image, segmenter, meta = scene
    h, w = image.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[h // 5:h // 2, w // 4:3 * w // 5] = True
    side = segmenter.model.image_size // 4
    low = np.asarray(PILImage.fromarray(mask.astype(np.float32), mode="F").resize((side, side), PILImage.BILINEAR))
    masks, scores, logits = meta.predict(mask_input=(low * 20 - 10)[None], multimask_output=False)
    ours = segmenter.predict([Prompt(object_id=4, mask=mask)]).objects[0]
    assert ours.object_id == 4 and masks[0].any()
    diff = np.count_nonzero(ours.mask != masks[0].astype(bool))
    assert diff <= 2e-5 * mask.size, f"{diff} pixels differ from Meta's mask"  # Pillow and torch round apart
    assert ours.score == pytest.approx(float(scores[0]), abs=1e-3)
    np.testing.assert_allclose(ours.logits, logits, atol=1e-2)


