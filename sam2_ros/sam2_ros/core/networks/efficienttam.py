"""EfficientTAM (Xiong et al., ICCV 2025): SAM 2 with a plain ViT image encoder and cheaper memory attention.

What differs from SAM 2, all else being Meta's `sam2` modules: a ViT-S or ViT-Ti trunk
(ViTDet style: windowed blocks, a global block every third) with a one-level neck, so the mask
decoder gets no high-resolution features; and in the `_1` / `_2` variants a memory
cross-attention that averages each memory frame's keys and values over 2x2 patches
(`LandmarkRoPEAttention`). Module and parameter names follow EfficientTAM's checkpoints.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sam2.modeling.backbones.image_encoder import ImageEncoder
from sam2.modeling.backbones.utils import PatchEmbed, window_partition, window_unpartition
from sam2.modeling.position_encoding import apply_rotary_enc
from sam2.modeling.sam.transformer import RoPEAttention
from sam2.modeling.sam2_base import SAM2Base
from sam2.modeling.sam2_utils import MLP, LayerNorm2d
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
from sam2_ros.core.networks.memory_attention import FrameMemoryAttention
from sam2_ros.core.networks.registry import Family, StateDict

PRETRAIN_GRID = 14  # the ViT was pretrained on 224-pixel images: 14 x 14 patches (and a class token)
SIZES = (("s", 384, 6), ("ti", 192, 3))  # (size, ViT width, heads)
# name -> (ViT width, heads, memory cross-attention: None = SAM 2's, 1 or 2 = landmark variant, native size)
VARIANTS = {
    f"efficienttam_{size}{suffix}": (width, heads, variant, native)
    for size, width, heads in SIZES
    for suffix, variant, native in (("", None, 1024), ("_1", 1, 1024), ("_2", 2, 1024), ("_512x512", None, 512))
}


class ViTAttention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) map or window."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = (self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
                   .reshape(3, b * self.num_heads, h * w, -1).unbind(0))
        q, k, v = (t.view(b, self.num_heads, h * w, -1) for t in (q, k, v))
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1))


class ViTBlock(nn.Module):
    """Pre-norm transformer block, attending within windows of `window` patches or globally (0)."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, dim * 4, dim, num_layers=2, activation=nn.GELU)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, x = x, self.norm1(x)
        if self.window:
            h, w = x.shape[1:3]
            x, padded = window_partition(x, self.window)
            x = window_unpartition(self.attn(x), self.window, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ViTTrunk(nn.Module):
    """Plain ViT, stride 16, one output: the last block's map (B, C, H/16, W/16)."""

    def __init__(self, width: int, num_heads: int, depth: int = 12, window: int = 14,
                 global_every: int = 3):
        super().__init__()
        self.patch_embed = PatchEmbed(kernel_size=(16, 16), stride=(16, 16), padding=(0, 0), embed_dim=width)
        self.pos_embed = nn.Parameter(torch.randn(1, PRETRAIN_GRID ** 2 + 1, width) * 0.02)
        self.blocks = nn.ModuleList(
            ViTBlock(width, num_heads, 0 if i % global_every == global_every - 1 else window) for i in range(depth))
        self.channel_list = [width]

    def position(self, hw: tuple[int, int]) -> torch.Tensor:
        """Return the pretrained 14 x 14 position embedding (no class token), resized bicubically to the grid."""
        grid = self.pos_embed[:, 1:].reshape(1, PRETRAIN_GRID, PRETRAIN_GRID, -1)
        if hw == (PRETRAIN_GRID, PRETRAIN_GRID):
            return grid
        resized = F.interpolate(grid.permute(0, 3, 1, 2), size=hw, mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self.position((x.shape[1], x.shape[2]))
        for block in self.blocks:
            x = block(x)
        return [x.permute(0, 3, 1, 2)]


class ViTDetNeck(nn.Module):
    """One level: 1x1 and 3x3 convolutions to SAM 2's width, each followed by a channel LayerNorm."""

    def __init__(self, width: int, position_encoding: nn.Module, d_model: int = MODEL_DIM):
        super().__init__()
        self.backbone_channel_list, self.d_model = [width], d_model
        self.position_encoding = position_encoding
        self.convs = nn.ModuleList([nn.Sequential()])
        self.convs[0].add_module("conv_1x1", nn.Conv2d(width, d_model, kernel_size=1, bias=False))
        self.convs[0].add_module("norm_0", LayerNorm2d(d_model))
        self.convs[0].add_module("conv_3x3", nn.Conv2d(d_model, d_model, kernel_size=3, padding=1, bias=False))
        self.convs[0].add_module("norm_1", LayerNorm2d(d_model))

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        out = self.convs[0](xs[0])
        return [out], [self.position_encoding(out).to(out.dtype)]


def pooled(x: torch.Tensor, frames_tokens: int, side: int) -> torch.Tensor:
    """Average each memory frame's (side x side) map of keys or values over 2x2 patches.

    x is (B, heads, frames * side^2, C); returns (B, heads, frames * side^2 / 4, C): 2x2 neighbours
    of the map become one token (their order does not matter to attention, their grouping does).
    """
    b, h, _, c = x.shape
    maps = x.reshape(b, -1, frames_tokens, c).transpose(-2, -1).reshape(b, -1, side, side)
    maps = F.avg_pool2d(maps, 2, stride=2)
    return maps.reshape(b, -1, c, frames_tokens // 4).transpose(-2, -1).reshape(b, h, -1, c)


class LandmarkRoPEAttention(RoPEAttention):
    """SAM 2's memory cross-attention on 2x2-averaged memory frames (EfficientTAM's `_1` and `_2`).

    Object pointers are kept whole. Averaging 4 keys into one divides their softmax weight by
    4, which `log 4` restores: variant 1 adds it to those logits; variant 2, as published, adds
    it to the averaged keys themselves. With one memory frame attention is exact.
    """

    fixed_slots = False  # padding frames would change the pooling: a compiled step attends unpadded

    def __init__(self, *args, variant: int, **kwargs):
        super().__init__(*args, rope_k_repeat=True, **kwargs)
        self.variant = variant

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        tokens = q.shape[-2]
        side = math.isqrt(tokens)
        self.freqs_cis = self.freqs_cis.to(q.device)
        if self.freqs_cis.shape[0] != tokens:
            self.freqs_cis = self.compute_cis(end_x=side, end_y=side).to(q.device)
        spatial = k.shape[-2] - num_k_exclude_rope
        q, rotated = apply_rotary_enc(q, k[:, :, :spatial], freqs_cis=self.freqs_cis, repeat_freqs_k=True)
        k = torch.cat([rotated, k[:, :, spatial:]], dim=-2)
        dropout_p = self.dropout_p if self.training else 0.0
        if spatial <= tokens:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            k_avg, v_avg = pooled(k[:, :, :spatial], tokens, side), pooled(v[:, :, :spatial], tokens, side)
            k_ptr, v_ptr = k[:, :, spatial:], v[:, :, spatial:]
            values = torch.cat([v_avg, v_ptr], dim=-2)
            if self.variant == 1:
                scale = 1 / math.sqrt(k.shape[-1])
                logits = torch.cat([q @ k_avg.transpose(-2, -1) * scale + 2 * math.log(2),
                                    q @ k_ptr.transpose(-2, -1) * scale], dim=-1)
                weights = torch.dropout(torch.softmax(logits, dim=-1), dropout_p, train=self.training)
                out = weights @ values
            else:
                keys = torch.cat([k_avg + 2 * math.log(2), k_ptr], dim=-2)
                out = F.scaled_dot_product_attention(q, keys, values, dropout_p=dropout_p)
        return self.out_proj(self._recombine_heads(out))


def build_efficienttam(name: str, image_size: int) -> SAM2Base:
    """EfficientTAM variant `name` (its published config) at `image_size`, randomly initialised."""
    width, heads, variant, _ = VARIANTS[name]
    side = image_size // 16
    cross = dict(rope_theta=10000.0, feat_sizes=(side, side), kv_in_dim=MEMORY_DIM, **ATTENTION)
    cross_attention = (RoPEAttention(rope_k_repeat=True, **cross) if variant is None
                       else LandmarkRoPEAttention(variant=variant, **cross))
    return SAM2Base(
        image_encoder=ImageEncoder(trunk=ViTTrunk(width, heads), neck=ViTDetNeck(width, sine(MODEL_DIM)), scalp=0),
        memory_attention=FrameMemoryAttention(d_model=MODEL_DIM, pos_enc_at_input=True,
                                              layer=memory_layer(side, cross_attention), num_layers=4),
        memory_encoder=memory_encoder(), image_size=image_size, use_high_res_features_in_sam=False,
        **TRACKING, **POSTPROCESSING)


WIDTHS = {width: f"efficienttam_{size}" for size, width, _ in SIZES}


def recognise(state: StateDict) -> str | None:
    """Name the width of EfficientTAM weights: the one-level ViTDet neck is its own, the ViT's width the size.

    The variants of one width have the same weights, so the width's name comes back
    (efficienttam_s or efficienttam_ti).
    """
    patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None or "image_encoder.neck.convs.0.conv_1x1.weight" not in state:
        return None
    return WIDTHS.get(patch.shape[0])


def hint(width: str) -> str:
    variants = [name for name in VARIANTS if name == width or name.startswith(f"{width}_")]
    return (f"It looks like an EfficientTAM checkpoint of width '{width}': set `model` to "
            f"{', '.join(variants[:-1])} or {variants[-1]}, as its file name says")


FAMILY = Family(title="EfficientTAM", models={name: native for name, (*_, native) in VARIANTS.items()},
                build=build_efficienttam, recognise=recognise, hint=hint,
                published=("EfficientTAM's at https://huggingface.co/yunyangx/efficient-track-anything "
                           "(efficienttam_ti.pt, ...)"),
                hub={name: Published("yunyangx/efficient-track-anything", f"{name}.pt") for name in VARIANTS},
                benchmarked=tuple((name, native) for name, (*_, native) in VARIANTS.items()))
