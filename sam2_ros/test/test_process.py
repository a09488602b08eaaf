"""Process tuning: what main() changes for latency, and that leaving puts every bit of it back."""
import gc
import sys

import pytest

from sam2_ros.ros.process import ProcessTuning


@pytest.fixture
def switch_interval():
    """Restore the interpreter's switch interval whatever a test does."""
    before = sys.getswitchinterval()
    yield before
    sys.setswitchinterval(before)


def test_process_tuning_is_main_s_and_is_undone_on_exit(switch_interval):
    with ProcessTuning() as tuning:
        assert sys.getswitchinterval() == pytest.approx(0.0001)
        tuning.model_loaded()
        assert gc.get_freeze_count() > 0
    assert sys.getswitchinterval() == switch_interval and gc.get_freeze_count() == 0


def test_a_process_already_switching_faster_is_never_slowed(switch_interval):
    sys.setswitchinterval(0.00005)
    faster = sys.getswitchinterval()  # as the interpreter stores it (whole microseconds)
    with ProcessTuning():
        assert sys.getswitchinterval() == faster
    assert sys.getswitchinterval() == faster


def test_a_tuning_that_froze_nothing_leaves_a_freeze_made_by_others(switch_interval):
    """A node configured and cleaned up before any model loaded must not thaw a library's frozen objects."""
    gc.freeze()
    try:
        theirs = gc.get_freeze_count()
        with ProcessTuning() as tuning:
            tuning.model_released()
        assert theirs > 0 and gc.get_freeze_count() == theirs
    finally:
        gc.unfreeze()
