"""EdgeTAM (Zhou et al., CVPR 2025): SAM 2's streaming design at a fraction of its cost.

Three parts differ from SAM 2, all else is Meta's `sam2` modules: a RepViT-M1 image encoder
(from timm, built without downloading weights), a spatial perceiver that compresses each
memory frame to 512 tokens (`perceiver.py`), and a memory cross-attention whose rotary
encoding knows those tokens' layout (`LatentRoPEAttention`). Module and parameter names follow
EdgeTAM's checkpoint (`edgetam.pt`), so it loads with no key left over; `EdgeTAM.deploy` then
rearranges the loaded network for inference, as a convolutional network is deployed.
"""
from __future__ import annotations

import torch
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.position_encoding import compute_axial_cis
from sam2.modeling.sam.transformer import RoPEAttention
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

from sam2_ros.core.hub import Published
from sam2_ros.core.networks.family_parts import (
    ATTENTION,
    MEMORY_DIM,
    MODEL_DIM,
    POSTPROCESSING,
    TRACKING,
    memory_encoder,
    memory_layer,
    sine,
)
from sam2_ros.core.networks.memory_attention import FrameMemoryAttention, rotated
from sam2_ros.core.networks.perceiver import SpatialPerceiver
from sam2_ros.core.networks.registry import Family, StateDict

BACKBONE = "repvit_m1.dist_in1k"  # timm's name; its feature maps have 48, 96, 192, 384 channels


class TimmTrunk(nn.Module):
    """A timm backbone's feature maps, finest first; weights come from the checkpoint, never downloaded."""

    def __init__(self, name: str = BACKBONE, levels: int = 4):
        super().__init__()
        import timm  # EdgeTAM's dependency only

        self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=tuple(range(levels)))
        self.channel_list = self.body.feature_info.channels()[::-1]  # coarsest first, as SAM 2's neck expects

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Re-parameterise for inference, as RepViT is deployed (timm's own `fuse`).

        Each block's parallel branches and batch norms become one convolution: equal up to float
        rounding, a fifth less encoder time. Load the checkpoint first (its layout is the unfused one).
        """
        def fuse_below(parent: nn.Module) -> None:
            for name, child in parent.named_children():
                if hasattr(child, "fuse"):
                    child = child.fuse()
                    setattr(parent, name, child)
                fuse_below(child)
        fuse_below(self.body)


class LatentRoPEAttention(RoPEAttention):
    """Memory cross-attention with rotary encoding on the image queries and on each frame's 2D latents.

    Keys are memory frames of `frame_tokens` each (global latents first, then the 2D latents
    of a `k_side` x `k_side` grid) followed by object pointers, which get no rotation.
    Subclassing SAM 2's RoPEAttention makes SAM 2's memory attention tell it how many
    pointer tokens there are.
    """

    def __init__(self, *args, rope_theta: float, q_side: int, k_side: int, frame_tokens: int, **kwargs):
        super().__init__(*args, rope_theta=rope_theta, feat_sizes=(q_side, q_side), **kwargs)
        self.freqs_k = compute_axial_cis(dim=self.internal_dim // self.num_heads, end_x=k_side, end_y=k_side,
                                         theta=rope_theta)
        self.frame_tokens = frame_tokens

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        self.freqs_cis, self.freqs_k = self.freqs_cis.to(q.device), self.freqs_k.to(q.device)
        return self.masked(q, k, v, num_k_exclude_rope)

    def masked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int,
               key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend with keys masked out (a compiled step's padding), writing nothing into the module."""
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        freqs_q, freqs_k = self.freqs_cis.to(q.device), self.freqs_k.to(q.device)
        if freqs_q.shape[0] != q.shape[-2]:
            raise ValueError(f"{q.shape[-2]} image tokens, but rotary encoding for {freqs_q.shape[0]}")
        q = rotated(q, freqs_q)
        spatial = k.shape[-2] - num_k_exclude_rope
        if spatial:
            b, h, _, c = k.shape
            frames = k[:, :, :spatial].reshape(b, h, spatial // self.frame_tokens, self.frame_tokens, c)
            grid = freqs_k.shape[0]
            frames = torch.cat([frames[..., :-grid, :], rotated(frames[..., -grid:, :], freqs_k)], dim=-2)
            k = torch.cat([frames.reshape(b, h, spatial, c), k[:, :, spatial:]], dim=-2)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,
                                                         dropout_p=self.dropout_p if self.training else 0.0)
        return self.out_proj(self._recombine_heads(out))


@torch.no_grad()
def folded(first: nn.Conv2d, then: nn.Conv2d) -> nn.Conv2d:
    """One 1x1 convolution computing `then(first(x))` (both 1x1), its weights composed in float64."""
    outer = then.weight.double().flatten(1)
    conv = nn.Conv2d(first.in_channels, then.out_channels, kernel_size=1).to(first.weight.device)
    conv.weight.copy_((outer @ first.weight.double().flatten(1))[..., None, None])
    conv.bias.copy_(outer @ first.bias.double() + then.bias.double())
    return conv


class EdgeTAM(SAM2Base):
    """SAM 2 whose memory frames pass through the spatial perceiver before they are kept."""

    def __init__(self, *args, spatial_perceiver: SpatialPerceiver, **kwargs):
        super().__init__(*args, **kwargs)
        self.spatial_perceiver = spatial_perceiver

    @torch.no_grad()
    def deploy(self) -> None:
        """Rearrange the loaded network for inference: the same function, a third less encoder time.

        RepViT re-parameterised (`TimmTrunk.fuse`) and run channels-last, the layout oneDNN's
        convolutions want. The neck's two high-resolution levels are a lone 1x1 convolution to 256
        channels (no top-down path reaches them) that only the decoder's 1x1 projections to 32 and
        64 channels read: each pair becomes one convolution, so the 256-channel maps at 1/4 and 1/8
        of the input are never made. Only float rounding changes (the reference comparison deploys
        EdgeTAM's own network the same way; a test holds this one to the network as loaded).
        """
        trunk, neck, decoder = self.image_encoder.trunk, self.image_encoder.neck, self.sam_mask_decoder
        trunk.fuse()
        trunk.to(memory_format=torch.channels_last)
        coarsest = len(neck.convs) - 1  # the neck's convolutions run coarsest level first
        for level, projection in ((0, "conv_s0"), (1, "conv_s1")):
            if level in neck.fpn_top_down_levels:
                raise ValueError(f"level {level} of the neck has a top-down path: its lateral cannot be folded")
            lateral = neck.convs[coarsest - level]
            lateral.conv = folded(lateral.conv, getattr(decoder, projection))
            setattr(decoder, projection, nn.Identity())

    def _encode_new_memory(self, *args, **kwargs):
        features, pos = super()._encode_new_memory(*args, **kwargs)
        features, pos[0] = self.spatial_perceiver(features, pos[0])
        return features, pos


def build_edgetam(name: str, image_size: int) -> EdgeTAM:
    """EdgeTAM's published architecture (its `edgetam.yaml`) at `image_size`, randomly initialised."""
    trunk = TimmTrunk()
    neck = FpnNeck(position_encoding=sine(MODEL_DIM), d_model=MODEL_DIM, backbone_channel_list=trunk.channel_list,
                   fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
    perceiver = SpatialPerceiver(dim=MEMORY_DIM, depth=2, dim_head=64, num_heads=1, ff_mult=4, num_latents=256,
                                 num_latents_2d=256, position_encoding=sine(MEMORY_DIM))
    side = image_size // 16
    cross = LatentRoPEAttention(rope_theta=10000.0, q_side=side, k_side=perceiver.grid, frame_tokens=perceiver.tokens,
                                kv_in_dim=MEMORY_DIM, **ATTENTION)
    return EdgeTAM(
        image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        memory_attention=FrameMemoryAttention(d_model=MODEL_DIM, pos_enc_at_input=True,
                                              layer=memory_layer(side, cross), num_layers=2),
        memory_encoder=memory_encoder(), spatial_perceiver=perceiver, image_size=image_size,
        use_high_res_features_in_sam=True, **TRACKING, **POSTPROCESSING)


def recognise(state: StateDict) -> str | None:
    """Name EdgeTAM's weights: only EdgeTAM has a spatial perceiver."""
    return "edgetam" if "spatial_perceiver.latents" in state else None


FAMILY = Family(title="EdgeTAM", models={"edgetam": 1024}, build=build_edgetam, recognise=recognise,
                deploy=EdgeTAM.deploy,
                published="EdgeTAM's edgetam.pt at https://huggingface.co/facebook/EdgeTAM",
                hub={"edgetam": Published("facebook/EdgeTAM", "edgetam.pt")},
                benchmarked=(("edgetam", 1024),), bf16_benchmarked=(("edgetam", 1024),))
