"""sam2_bench --suite compiled: what it compares (the suite itself compiles for minutes, so it is run by hand)."""
import numpy as np
import pytest

from sam2_ros.tools.compiled_bench import agreement, bench_compiled


def test_agreement_is_the_worst_frames_share_of_agreeing_pixels():
    same = np.array([[True, False], [False, False]])
    one_off = np.array([[True, True], [False, False]])  # 3 of 4 pixels agree
    two_off = np.array([[False, True], [False, False]])  # 2 of 4 agree
    assert agreement([same, same, same], [same, one_off, two_off]) == 0.5
    assert agreement([same], [same]) == 1.0


def test_two_runs_of_different_lengths_are_not_compared():
    with pytest.raises(ValueError):
        agreement([np.zeros((2, 2), bool)] * 2, [np.zeros((2, 2), bool)])


def test_a_clip_too_short_to_fill_the_memory_is_refused_before_anything_loads():
    with pytest.raises(ValueError, match="--model-frames must be over 8 \\(the memory fills first\\), got 8"):
        bench_compiled("cpu", 8, lambda: None)
