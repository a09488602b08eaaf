"""A network's forward pass in slices: paused between its modules, advanced only while the caller waits.

A detector pass takes longer than a camera frame's period on a CPU. Run whole, it would stall
tracking; run beside it, it would share the cores with it. Here it runs on a helper thread that
checks the clock at every module it enters and hands control back once its slice is spent, so the
worker thread runs the camera's frames in between and the two never compute at the same time.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class Cancelled(Exception):
    """Raised inside the helper thread at its next module once the pass is cancelled."""


class SlicedCall:
    """`fn()` run on a helper thread, a slice at a time: `step(slice_s)` returns True once it ended."""

    def __init__(self, fn: Callable[[], Any], network: nn.Module, name: str = "sliced"):
        self._fn, self._network = fn, network
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
        """Let the pass compute for about `slice_s` (to the end of the module it is in); True when it ended."""
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
        """Stop the pass at its next module and wait for its thread."""
        if not self._done:
            self._cancelled = True
            self._go.release()
            self._paused.acquire()
        self._thread.join()

    def _checkpoint(self, module: nn.Module, args: tuple) -> None:
        """Every module's forward pre-hook: pause once the slice is spent; stop when cancelled."""
        if time.perf_counter() >= self._deadline:
            self._paused.release()
            self._go.acquire()
        if self._cancelled:
            raise Cancelled

    def _run(self) -> None:
        self._go.acquire()
        hooks = [module.register_forward_pre_hook(self._checkpoint) for module in self._network.modules()]
        try:
            if self._cancelled:
                raise Cancelled
            with torch.inference_mode():
                self._value = self._fn()
        except BaseException as error:  # handed to the caller through result()
            self._error = error
        finally:
            for hook in hooks:
                hook.remove()
            self._done = True
            self._paused.release()
