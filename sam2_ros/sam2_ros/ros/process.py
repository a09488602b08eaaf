"""Process-wide tuning for the node's latency, owned by main() and undone on exit.

The node class is also a library (tests, composed executables): it changes nothing of the
process it runs in. The process owner opts in by handing it a ProcessTuning.
"""
from __future__ import annotations

import gc
import sys

GIL_SWITCH_INTERVAL_S = 0.0001


class ProcessTuning:
    """A short GIL switch interval while entered; the model's objects frozen out of the collector.

    The worker hands the GIL back around every torch op. At Python's default 5 ms switch interval
    each op can then wait that long behind the executor threads' Python, which on a busy CPU
    stretches one frame by seconds. A loaded model's many long-lived Python objects make every
    full collection take hundreds of milliseconds; frozen, they are skipped.
    """

    def __init__(self) -> None:
        self._previous_interval: float | None = None
        self._frozen = False

    def __enter__(self) -> ProcessTuning:
        previous = sys.getswitchinterval()
        if previous > GIL_SWITCH_INTERVAL_S:  # a process switching faster already is left as it is
            self._previous_interval = previous
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        return self

    def __exit__(self, *exc) -> None:
        self.model_released()
        if self._previous_interval is not None:
            sys.setswitchinterval(self._previous_interval)
            self._previous_interval = None

    def model_loaded(self) -> None:
        gc.collect()
        gc.freeze()
        self._frozen = True

    def model_released(self) -> None:
        """Let the released model be collected; only undoes this object's own freeze."""
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
