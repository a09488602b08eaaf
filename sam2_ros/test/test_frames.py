"""The ring of recent frames: identified by arrival, found by stamp, bounded."""
import numpy as np
import pytest

from sam2_ros.core.encoding import EncodedFrame
from sam2_ros.core.frames import FrameNotKept, FrameNotYet, FrameRing, RecentFrame


def frame(seq: int, stamp: int, hw=(4, 6)) -> RecentFrame:
    return RecentFrame(seq=seq, stamp_ns=stamp, header=f"header {seq}", rgb=np.zeros((*hw, 3), np.uint8),
                       encoded=EncodedFrame(hw, None, 0.0), tracker_index=seq)


def test_a_repeated_stamp_finds_the_newest_frame_with_it_and_the_newest_is_the_last_committed():
    ring = FrameRing(4)
    for seq, stamp in enumerate([1, 2, 1]):  # a looping bag, a simulator reset, two publishers
        ring.commit(frame(seq, stamp, hw=(4 + seq, 6)))
    assert ring.newest().seq == 2 and ring.find(0).seq == 2
    assert ring.find(1).seq == 2 and ring.find(2).seq == 1
    assert ring.find(1).image_hw == (6, 6)


def test_the_oldest_frame_leaves_first_and_a_prompt_older_than_every_kept_frame_is_refused():
    ring = FrameRing(2)
    for seq in range(3):
        ring.commit(frame(seq, 10 + seq))
    assert [ring.find(s).seq for s in (11, 12)] == [1, 2]
    with pytest.raises(FrameNotKept, match=r"stamped for frame 0.000000010 s, older than every frame this "
                                           r"node keeps \(from 0.000000011 s; recent_frames 2\)"):
        ring.find(10)


def test_a_stamp_between_kept_frames_finds_the_first_kept_frame_after_it_never_an_older_one():
    ring = FrameRing(4)
    for seq, stamp in enumerate([100, 133, 166, 200]):  # a 5 Hz model on a 30 Hz camera skips the rest
        ring.commit(frame(seq, stamp))
    assert [ring.find(stamp).stamp_ns for stamp in (110, 120, 150, 190, 200)] == [133, 133, 166, 200, 200]
    with pytest.raises(FrameNotYet, match=r"no frame stamped 0.000000500 s or later processed yet \(the latest is "
                                          r"0.000000200 s\)"):
        ring.find(500)  # still on its way: the prompt waits for it
    with pytest.raises(FrameNotKept, match="more than prompt_max_age_s"):
        ring.find(110, max_age_ns=50)
    assert ring.find(160, max_age_ns=50).stamp_ns == 166


def test_before_the_first_frame_a_stamped_prompt_waits_for_it_and_out_of_order_commits_are_refused():
    ring = FrameRing(2)
    with pytest.raises(FrameNotKept, match="no camera frame processed yet"):
        ring.newest()
    with pytest.raises(FrameNotKept, match="no camera frame processed yet"):
        ring.find(0)  # "the newest frame": there is none
    with pytest.raises(FrameNotYet, match=r"no frame stamped 0.000000005 s or later processed yet \(none so far\)"):
        ring.find(5)  # a detector's box for a frame still on its way
    ring.commit(frame(5, 1))
    with pytest.raises(ValueError, match="frame 5 is not newer than frame 5"):
        ring.commit(frame(5, 2))
    assert len(ring) == 1


def test_prompt_max_age_refuses_an_old_prompt_even_when_its_stamp_is_a_kept_frame_exactly():
    """Newest frame at 4.0 s, limit 1.5 s: a prompt for the kept frame at 1.0 s is as old as one at 1.1 s."""
    ring = FrameRing(4)
    for seq, seconds in enumerate([1.0, 2.0, 3.0, 4.0]):
        ring.commit(frame(seq, int(seconds * 1e9)))
    for stamp in (1_000_000_000, 1_100_000_000):
        with pytest.raises(FrameNotKept, match="more than prompt_max_age_s 1.5 s"):
            ring.find(stamp, max_age_ns=1_500_000_000)
    assert ring.find(3_000_000_000, max_age_ns=1_500_000_000).seq == 2
    assert ring.find(2_500_000_000, max_age_ns=1_500_000_000).seq == 2  # exactly 1.5 s old: within the limit
