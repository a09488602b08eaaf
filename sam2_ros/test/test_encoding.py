"""The image encoder's input and output: Meta's transforms, one encoding a frame, the decoder's part kept."""
import torch
from sam2.utils.transforms import SAM2Transforms

from conftest import photo
from sam2_ros.core.encoding import decoder_inputs, encode, for_prompts, to_model_input


def test_a_frame_becomes_the_model_input_metas_transforms_make(small_model):
    image = photo("chelsea")  # 451 x 300: not square, resized to the input size as Meta's does
    meta = SAM2Transforms(resolution=small_model.image_size, mask_threshold=0.0)
    torch.testing.assert_close(to_model_input(image, small_model.image_size, torch.device("cpu")),
                               meta(image)[None], rtol=0, atol=1e-6)


def test_the_decoders_inputs_equal_metas_image_predictor_features(small_model):
    """Image embedding and high-resolution features as Meta's SAM2ImagePredictor.set_image keeps them."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    image = photo("astronaut")
    predictor = SAM2ImagePredictor(small_model.sam)
    side = small_model.image_size // 16  # Meta hard-codes feature sizes for 1024 inputs
    predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
    predictor.set_image(image)
    frame = encode(small_model, image)
    embed, high_res = decoder_inputs(small_model, frame)
    torch.testing.assert_close(embed, predictor._features["image_embed"], rtol=0, atol=0)
    for ours, meta in zip(high_res, predictor._features["high_res_feats"], strict=True):
        torch.testing.assert_close(ours, meta, rtol=0, atol=0)
    assert frame.image_hw == image.shape[:2] and frame.encode_ms > 0


def test_what_is_kept_for_later_prompts_is_the_decoders_part_alone(small_model):
    frame = encode(small_model, photo("coffee"))
    kept = for_prompts(small_model, frame)
    assert kept.backbone is None and kept.image_hw == frame.image_hw and kept.encode_ms == frame.encode_ms
    (embed, high_res), (again, high_again) = decoder_inputs(small_model, kept), decoder_inputs(small_model, frame)
    assert torch.equal(embed, again) and all(torch.equal(a, b) for a, b in zip(high_res, high_again, strict=True))
