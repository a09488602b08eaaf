"""SAM 2's memory attention, its first self-attention computed once per frame rather than once per object.

The first layer's self-attention reads only the frame's image features and their positions,
never an object's memory, so every object tracked on a frame gets the same numbers from it. On
the CPU at large input sizes the tracker steps objects one by one (a batch outgrows the caches),
and each step repeated it: at input size 1024 a 4096-token attention, about 0.18 s on two cores,
once more for every further object. The rest is Meta's arithmetic, in Meta's order.

For a compiled step (`MemorySlots`), the memory is padded to a few fixed sizes with a mask on
the padding, so that `torch.compile` (and CUDA graphs) see the same shapes on every frame.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttention
from sam2.modeling.sam.transformer import RoPEAttention


@dataclass
class MemorySlots:
    """Fixed sizes for the memory SAM 2 attends to: whole frames in a few buckets, pointers up to a cap.

    A frame's memory has `frame_tokens` tokens; `frame_buckets` are the frame counts the memory is
    padded to (the smallest that holds it); pointer tokens are padded to `pointer_tokens`. Padding
    is masked out of the attention, so each real token's weight is what it is unpadded. `on` is
    the tracker's switch: only its steps on camera frames take this path; `layers` is the
    compiled remainder of the memory attention.
    """

    frame_tokens: int
    frame_buckets: tuple[int, ...]
    pointer_tokens: int
    layers: Callable | None = None
    on: bool = False

    def pad(self, memory: torch.Tensor, pos: torch.Tensor, pointers: int):
        """Pad (S, B, C) memory and positions; return them, the key mask (1, 1, 1, S') and the pointer tokens.

        None when the memory does not fit the largest bucket (then the step runs unpadded).
        """
        spatial = memory.shape[0] - pointers
        frames = -(-spatial // self.frame_tokens)
        bucket = next((b for b in self.frame_buckets if b >= frames), None)
        if bucket is None or pointers > self.pointer_tokens:
            return None
        gaps = (bucket * self.frame_tokens - spatial, self.pointer_tokens - pointers)

        def padded(x: torch.Tensor) -> torch.Tensor:
            zeros = [x.new_zeros(gap, *x.shape[1:]) for gap in gaps]
            return torch.cat([x[:spatial], zeros[0], x[spatial:], zeros[1]])
        valid = torch.ones(memory.shape[0] + sum(gaps), dtype=torch.bool, device=memory.device)
        valid[spatial:spatial + gaps[0]] = False
        if gaps[1]:
            valid[-gaps[1]:] = False
        return padded(memory), padded(pos), valid[None, None, None], self.pointer_tokens


def rotated(x: torch.Tensor, freqs: torch.Tensor, repeats: int = 1) -> torch.Tensor:
    """Rotate the channel pairs of x (..., N * repeats, C) by complex freqs (N, C / 2), as SAM 2's RoPE does.

    Keys longer than the table take it `repeats` times. Exported graphs rotate in real
    arithmetic (ONNX has no complex numbers); PyTorch keeps Meta's complex product exactly.
    """
    if torch.compiler.is_exporting():
        cos, sin = torch.view_as_real(freqs).repeat(repeats, 1, 1).unbind(-1)
        real, imaginary = x.float().unflatten(-1, (-1, 2)).unbind(-1)
        return torch.stack([real * cos - imaginary * sin, real * sin + imaginary * cos], -1).flatten(-2).type_as(x)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs.repeat(repeats, 1)).flatten(-2).type_as(x)


def masked_rope_attention(attention: RoPEAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          num_k_exclude_rope: int, key_mask: torch.Tensor) -> torch.Tensor:
    """Meta's RoPEAttention.forward with a key mask, and without writing into the module (compiled code)."""
    q = attention._separate_heads(attention.q_proj(q), attention.num_heads)
    k = attention._separate_heads(attention.k_proj(k), attention.num_heads)
    v = attention._separate_heads(attention.v_proj(v), attention.num_heads)
    freqs = attention.freqs_cis.to(q.device)
    if freqs.shape[0] != q.shape[-2]:
        side = q.shape[-2] ** 0.5
        freqs = attention.compute_cis(end_x=side, end_y=side).to(q.device)
    rope = k.shape[-2] - num_k_exclude_rope
    q = rotated(q, freqs)
    if rope:  # Meta's apply_rotary_enc: keys longer than the queries take the table again and again
        repeats = rope // q.shape[-2] if attention.rope_k_repeat else 1
        k = torch.cat([rotated(k[:, :, :rope], freqs, repeats), k[:, :, rope:]], dim=-2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    return attention.out_proj(attention._recombine_heads(out))


class FrameMemoryAttention(MemoryAttention):
    """MemoryAttention that, within `one_frame()`, computes its first self-attention once per frame.

    Outside it, every call computes everything, as Meta's does.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._frame: list | None = None  # within one_frame(): [] or [inputs, autocast state, output]
        self.slots: MemorySlots | None = None  # set by a compiled step

    def masked_layers(self, output: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor | None,
                      memory_pos: torch.Tensor, key_mask: torch.Tensor, pointers: int) -> torch.Tensor:
        """Everything after the first self-attention, on padded memory: Meta's layers with masked keys.

        Fixed shapes in, fixed shapes out: what a compiled step compiles.
        """
        for index, layer in enumerate(self.layers):
            if index > 0:
                output = layer._forward_sa(output, query_pos)
            tgt = layer.norm2(output)
            q = tgt + query_pos if layer.pos_enc_at_cross_attn_queries else tgt
            k = memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory
            attention = layer.cross_attn_image
            if hasattr(attention, "masked"):  # a family's own rotary attention
                attended = attention.masked(q, k, memory, pointers, key_mask)
            else:
                attended = masked_rope_attention(attention, q, k, memory, pointers, key_mask)
            output = output + layer.dropout2(attended)
            hidden = layer.dropout(layer.activation(layer.linear1(layer.norm3(output))))
            output = output + layer.dropout3(layer.linear2(hidden))
        return self.norm(output)

    @contextlib.contextmanager
    def one_frame(self) -> Iterator[None]:
        """Keep the first self-attention, while stepping on one frame, for the tensors it was computed from.

        A later call whose features and positions are those very tensors (held here, so no other
        frame can take their place), under the same autocast, gets it back: the caller promises
        not to write into them meanwhile, as SAM 2's step never does. Not in training (dropout
        draws anew on every call) nor with autograd (the output would carry a graph).
        """
        self._frame = None if self.training or torch.is_grad_enabled() else []
        try:
            yield
        finally:
            self._frame = None

    def forward(self, curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        if isinstance(curr, list):
            (curr,), (curr_pos,) = curr, curr_pos
        if curr.shape[1] != memory.shape[1]:
            raise ValueError(f"batch of {curr.shape[1]} frames' features but {memory.shape[1]} memories")
        query_pos = curr_pos.transpose(0, 1) if self.batch_first and curr_pos is not None else curr_pos
        output = self._first_self_attention(curr, curr_pos)
        slots = self.slots
        fitted = slots.pad(memory, memory_pos, num_obj_ptr_tokens) if slots is not None and slots.on else None
        if fitted is not None:
            memory, memory_pos, key_mask, pointers = fitted
            if self.batch_first:
                memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
            output = slots.layers(output, memory, query_pos, memory_pos, key_mask, pointers)
            return output.transpose(0, 1) if self.batch_first else output
        if self.batch_first:
            memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
        for index, layer in enumerate(self.layers):
            rotary = isinstance(layer.cross_attn_image, RoPEAttention)
            rope = {"num_k_exclude_rope": num_obj_ptr_tokens} if rotary else {}
            if index == 0:  # the rest of MemoryAttentionLayer.forward: cross-attention, then the MLP
                output = layer._forward_ca(output, memory, query_pos, memory_pos, **rope)
                hidden = layer.dropout(layer.activation(layer.linear1(layer.norm3(output))))
                output = output + layer.dropout3(layer.linear2(hidden))
            else:
                output = layer(tgt=output, memory=memory, pos=memory_pos, query_pos=query_pos, **rope)
        output = self.norm(output)
        return output.transpose(0, 1) if self.batch_first else output

    def first_layer(self, curr: torch.Tensor, curr_pos: torch.Tensor | None) -> torch.Tensor:
        """Run the first layer's self-attention block (residual included): it reads the frame alone."""
        query_pos = curr_pos.transpose(0, 1) if self.batch_first and curr_pos is not None else curr_pos
        output = curr + 0.1 * curr_pos if self.pos_enc_at_input and curr_pos is not None else curr
        return self.layers[0]._forward_sa(output.transpose(0, 1) if self.batch_first else output, query_pos)

    def _first_self_attention(self, curr: torch.Tensor, curr_pos: torch.Tensor | None) -> torch.Tensor:
        """Run the first layer's self-attention block on the frame's features, or reuse it."""
        device = curr.device.type
        state = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        kept = self._frame
        if kept and kept[0][0] is curr and kept[0][1] is curr_pos and kept[1] == state:
            return kept[2]
        output = self.first_layer(curr, curr_pos)
        if kept is not None:
            kept[:] = [(curr, curr_pos), state, output]
        return output
