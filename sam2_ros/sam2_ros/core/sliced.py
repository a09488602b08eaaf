"""A network's forward pass in slices: paused between its torch operations, advanced only while the caller waits.

A detector pass takes longer than a camera frame's period on a CPU. Run whole, it would stall
tracking; run beside it, it would share the cores with it. Here it runs on a helper thread that
checks the clock before every torch operation it calls and hands control back once its slice is
spent, so the worker thread runs the camera's frames in between and the two never compute at the
same time. Operations, not modules, are the unit: one module of Grounding DINO at 800 (its
deformable attention) runs for over half a second on a CPU, its longest operation for a fraction
of that. The longest operation of a ViT detector, attention over thousands of tokens (OWLv2 at
960: 3,601, a quarter of a second a layer), is itself run a block of query rows at a time, which
gives the same rows (each query's attention is its own).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

ATTENTION_ROWS = 512  # query rows per block of an attention split between checkpoints


class Cancelled(Exception):
    """Raised inside the helper thread at its next operation once the pass is cancelled."""


class _Checkpoints(TorchFunctionMode):
    """Calls `checkpoint()` before each torch function the thread that entered it calls (modes are per thread)."""

    def __init__(self, checkpoint: Callable[[], None]):
        super().__init__()
        self._checkpoint = checkpoint

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._checkpoint()
        if func is F.scaled_dot_product_attention and _splittable(*args, **kwargs):
            return self._attention_in_blocks(*args, **kwargs)
        return func(*args, **kwargs)

    def _attention_in_blocks(self, query, key, value, attn_mask=None, *rest, **kwargs):
        """Run the attention a block of query rows at a time, a checkpoint between blocks."""
        rows = query.shape[-2]
        blocks = []
        for start in range(0, rows, ATTENTION_ROWS):
            if start:
                self._checkpoint()
            end = start + ATTENTION_ROWS
            mask = attn_mask if attn_mask is None or attn_mask.shape[-2] == 1 else attn_mask[..., start:end, :]
            blocks.append(F.scaled_dot_product_attention(query[..., start:end, :], key, value, mask, *rest, **kwargs))
        return torch.cat(blocks, dim=-2)


def _splittable(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs) -> bool:
    """Rows split exactly: no causal offset, no dropout, a mask with a row per query or one for all."""
    return (query.shape[-2] > 2 * ATTENTION_ROWS and not is_causal and dropout_p == 0.0
            and (attn_mask is None or attn_mask.dim() >= 2))


class SlicedCall:
    """`fn()` run on a helper thread, a slice at a time: `step(slice_s)` returns True once it ended."""

    def __init__(self, fn: Callable[[], Any], name: str = "sliced"):
        self._fn = fn
        self._go, self._paused = threading.Semaphore(0), threading.Semaphore(0)
        self._deadline = 0.0
        self._cancelled = False
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self.ms = 0.0  # time spent computing, all slices together
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def step(self, slice_s: float) -> bool:
        """Let the pass compute for about `slice_s` (to the end of the operation it is in); True when it ended."""
        if self._done:
            return True
        start = time.perf_counter()
        self._deadline = start + slice_s
        self._go.release()
        self._paused.acquire()
        self.ms += (time.perf_counter() - start) * 1e3
        return self._done

    def result(self) -> Any:
        """Return the function's value once `step` returned True; its exception is raised here instead."""
        if not self._done:
            raise RuntimeError("the sliced call has not ended")
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> None:
        """Stop the pass at its next operation and wait for its thread."""
        if not self._done:
            self._cancelled = True
            self._go.release()
            self._paused.acquire()
        self._thread.join()

    def _checkpoint(self) -> None:
        """Before every torch operation: pause once the slice is spent; stop when cancelled."""
        if time.perf_counter() >= self._deadline:
            self._paused.release()
            self._go.acquire()
        if self._cancelled:
            raise Cancelled

    def _run(self) -> None:
        self._go.acquire()
        try:
            if self._cancelled:
                raise Cancelled
            with torch.inference_mode(), _Checkpoints(self._checkpoint):
                self._value = self._fn()
        except BaseException as error:  # handed to the caller through result()
            self._error = error
        finally:
            self._done = True
            self._paused.release()
