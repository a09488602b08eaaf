"""What the families' networks share: EdgeTAM's and EfficientTAM's configs with SAM 2, all with Meta's predictor.

Both keep SAM 2's memory encoder and SAM 2.0's tracking settings (no spatial no-object
embedding, no temporal projection of object pointers); only their encoders and memory
attention differ.
"""
from __future__ import annotations

from sam2.modeling.memory_attention import MemoryAttentionLayer
from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from sam2.modeling.sam.transformer import RoPEAttention
from torch import nn

from sam2_ros.core.networks.sine_maps import SharedSine

MEMORY_DIM, MODEL_DIM = 64, 256

TRACKING = dict(
    num_maskmem=7, sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
    use_mask_input_as_output_without_sam=True, directly_add_no_mem_embed=True, multimask_output_in_sam=True,
    iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True, add_tpos_enc_to_obj_ptrs=False,
    only_obj_ptrs_in_the_past_for_eval=True, pred_obj_scores=True, pred_obj_scores_mlp=True, fixed_no_obj_ptr=True,
    multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True, multimask_min_pt_num=0,
    multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True, compile_image_encoder=False)
ATTENTION = dict(embedding_dim=MODEL_DIM, num_heads=1, downsample_rate=1, dropout=0.1)

# What Meta's video predictor builder turns on (but fill_hole_area, which belongs to the
# tracker), in every family: one network then serves single images, where these settings
# change nothing, and tracking.
POSTPROCESSING = {
    "sam_mask_decoder_extra_args": {"dynamic_multimask_via_stability": True, "dynamic_multimask_stability_delta": 0.05,
                                    "dynamic_multimask_stability_thresh": 0.98},
    "binarize_mask_from_pts_for_mem_enc": True,
}


def sine(features: int) -> SharedSine:
    return SharedSine(num_pos_feats=features, normalize=True, scale=None, temperature=10000)


def memory_encoder() -> MemoryEncoder:
    """SAM 2's memory encoder: the mask downsampled into the image features, fused, 64 channels."""
    return MemoryEncoder(
        out_dim=MEMORY_DIM, position_encoding=sine(MEMORY_DIM),
        mask_downsampler=MaskDownSampler(kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=MODEL_DIM, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                    num_layers=2))


def memory_layer(side: int, cross_attention: nn.Module) -> MemoryAttentionLayer:
    """SAM 2's memory attention layer: RoPE self-attention on the side x side image tokens, then `cross_attention`."""
    return MemoryAttentionLayer(
        activation="relu", dim_feedforward=2048, dropout=0.1, pos_enc_at_attn=False, d_model=MODEL_DIM,
        pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        self_attention=RoPEAttention(rope_theta=10000.0, feat_sizes=(side, side), **ATTENTION),
        cross_attention=cross_attention)
