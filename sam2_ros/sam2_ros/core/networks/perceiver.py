"""EdgeTAM's spatial perceiver: each memory frame compressed to a few hundred latent tokens.

SAM 2 keeps every memory frame as a 64x64 map of 64-dim tokens (at input size 1024) and
cross-attends the new frame to all of them: most of its tracking cost on small devices.
EdgeTAM (Zhou et al., CVPR 2025) summarises a frame with 256 global latents, which attend to
the whole map, and 256 2D latents, one per window of a 16x16 grid, which keep where things
are; the new frame then attends to 512 tokens a frame. Parameter names follow EdgeTAM's
checkpoint (`spatial_perceiver.*`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def heads(x: torch.Tensor, count: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    b, n, c = x.shape
    return x.reshape(b, n, count, c // count).transpose(1, 2)


def merged(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, C / heads) -> (B, N, C)."""
    b, h, n, c = x.shape
    return x.transpose(1, 2).reshape(b, n, h * c)


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class LatentCrossAttention(nn.Module):
    """Latents ask the memory map; its position encoding is added to keys and values."""

    def __init__(self, dim: int, dim_head: int, num_heads: int):
        super().__init__()
        inner = dim_head * num_heads
        self.num_heads = num_heads
        self.norm_x, self.norm_latents = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        q = heads(self.to_q(self.norm_latents(latents)), self.num_heads)
        k, v = (heads(t, self.num_heads) for t in self.to_kv(self.norm_x(x)).chunk(2, dim=-1))
        if pos is not None:
            pos = heads(pos, self.num_heads)
            k, v = k + pos, v + pos
        return self.to_out(merged(F.scaled_dot_product_attention(q, k, v)))


class LatentSelfAttention(nn.Module):
    """The latents among themselves, after they read the map."""

    def __init__(self, dim: int, dim_head: int, num_heads: int):
        super().__init__()
        inner = dim_head * num_heads
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm(latents)
        q = heads(self.to_q(x), self.num_heads)
        k, v = (heads(t, self.num_heads) for t in self.to_kv(x).chunk(2, dim=-1))
        return self.to_out(merged(F.scaled_dot_product_attention(q, k, v)))


class PerceiverLayer(nn.Module):
    """Cross-attention to the map, then self-attention among the latents, each with a feed-forward."""

    def __init__(self, dim: int, dim_head: int, num_heads: int, ff_mult: int):
        super().__init__()
        self.attn = LatentCrossAttention(dim, dim_head, num_heads)
        self.ff = feed_forward(dim, ff_mult)
        self.self_attn = LatentSelfAttention(dim, dim_head, num_heads)
        self.self_ff = feed_forward(dim, ff_mult)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        latents = latents + self.self_attn(latents)
        return latents + self.self_ff(latents)


class SpatialPerceiver(nn.Module):
    """Memory map (B, C, H, W) and its position encoding -> (B, C, 1, global + 2D latents) of each.

    The output keeps SAM 2's (B, C, H, W) layout with H = 1, so SAM 2's memory code, which
    flattens H x W into tokens, takes the latents unchanged.
    """

    def __init__(self, dim: int = 64, depth: int = 2, dim_head: int = 64, num_heads: int = 1, ff_mult: int = 4,
                 num_latents: int = 256, num_latents_2d: int = 256, position_encoding: nn.Module | None = None):
        super().__init__()
        self.grid = round(num_latents_2d ** 0.5)
        if self.grid ** 2 != num_latents_2d:
            raise ValueError(f"num_latents_2d must be a square, got {num_latents_2d}")
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.latents_2d = nn.Parameter(torch.randn(num_latents_2d, dim))
        self.position_encoding = position_encoding
        self.layers = nn.ModuleList(PerceiverLayer(dim, dim_head, num_heads, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    @property
    def tokens(self) -> int:
        """Memory tokens per frame."""
        return self.latents.shape[0] + self.latents_2d.shape[0]

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        tokens, pos_tokens = x.flatten(2).transpose(1, 2), pos.flatten(2).transpose(1, 2)  # (B, HW, C)
        latents = self.latents.expand(b, -1, -1)
        for layer in self.layers:
            latents = layer(latents, tokens, pos_tokens)
        # 2D: one latent per window of the grid, attending to its window only, without position
        win_h, win_w = h // self.grid, w // self.grid
        windows = (x.reshape(b, c, self.grid, win_h, self.grid, win_w).permute(0, 2, 4, 3, 5, 1)
                   .reshape(b * self.grid ** 2, win_h * win_w, c))
        local = self.latents_2d.expand(b, -1, -1).reshape(-1, 1, c)
        for layer in self.layers:
            local = layer(local, windows)
        local = local.reshape(b, self.grid, self.grid, c).permute(0, 3, 1, 2)
        local_pos = self.position_encoding(local).flatten(2).transpose(1, 2)
        out = self.norm(torch.cat([latents, local.flatten(2).transpose(1, 2)], dim=1))
        out_pos = torch.cat([torch.zeros_like(latents), local_pos], dim=1)
        return out.transpose(1, 2).unsqueeze(2), out_pos.transpose(1, 2).unsqueeze(2)
