"""SAM 2's memory attention, its first self-attention computed once per frame rather than once per object.

The first layer's self-attention reads only the frame's image features and their positions,
never an object's memory, so every object tracked on a frame gets the same numbers from it. On
the CPU at large input sizes the tracker steps objects one by one (a batch outgrows the caches),
and each step repeated it: at input size 1024 a 4096-token attention, about 0.18 s on two cores,
once more for every further object. The rest is Meta's arithmetic, in Meta's order.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from sam2.modeling.memory_attention import MemoryAttention
from sam2.modeling.sam.transformer import RoPEAttention


class FrameMemoryAttention(MemoryAttention):
    """MemoryAttention that, within `one_frame()`, computes its first self-attention once per frame.

    Outside it, every call computes everything, as Meta's does.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._frame: list | None = None  # within one_frame(): [] or [inputs, autocast state, output]

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
        if self.batch_first:
            memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
        query_pos = curr_pos.transpose(0, 1) if self.batch_first and curr_pos is not None else curr_pos
        output = self._first_self_attention(curr, curr_pos, query_pos)
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

    def _first_self_attention(self, curr: torch.Tensor, curr_pos: torch.Tensor | None,
                              query_pos: torch.Tensor | None) -> torch.Tensor:
        """Run the first layer's self-attention block (residual included) on the frame's features, or reuse it."""
        device = curr.device.type
        state = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        kept = self._frame
        if kept and kept[0][0] is curr and kept[0][1] is curr_pos and kept[1] == state:
            return kept[2]
        output = curr + 0.1 * curr_pos if self.pos_enc_at_input and curr_pos is not None else curr
        output = self.layers[0]._forward_sa(output.transpose(0, 1) if self.batch_first else output, query_pos)
        if kept is not None:
            kept[:] = [(curr, curr_pos), state, output]
        return output
