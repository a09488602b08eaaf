"""Device to host in one copy: every array a frame's results need, packed into one buffer on the device.

Each `.cpu()` of a CUDA tensor waits for the GPU and pays a transfer's fixed cost; a frame's
masks, low-resolution logits, scores and presences taken one by one cost four of them per batch
of objects. On the CPU the tensors already are host memory and are returned as they are.
"""
from __future__ import annotations

import numpy as np
import torch


def to_host(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Return the tensors as numpy arrays: views on the CPU, one packed transfer from any other device."""
    if all(t.device.type == "cpu" for t in tensors):
        return [t.numpy() for t in tensors]
    return packed_to_host(*tensors)


def packed_to_host(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Copy the tensors' bytes, laid end to end on their device, to the host at once; split them there."""
    flat = [t.contiguous().reshape(-1).view(torch.uint8) for t in tensors]
    buffer = torch.cat(flat).cpu().numpy()
    arrays, offset = [], 0
    for tensor, part in zip(tensors, flat):
        dtype = torch.empty(0, dtype=tensor.dtype).numpy().dtype
        arrays.append(buffer[offset:offset + part.numel()].view(dtype).reshape(tuple(tensor.shape)))
        offset += part.numel()
    return arrays
