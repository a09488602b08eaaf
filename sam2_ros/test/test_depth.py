"""Which depth frame a colour frame gets, and why it gets none: each reason is its own /diagnostics counter."""
import threading
import time
from math import nan

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from rosharness import header
from sam2_ros.ros.conversions import array_to_image
from sam2_ros.ros.depth import DepthInput, NoDepth

MS = 1_000_000


def info(width: int = 4, height: int = 3) -> CameraInfo:
    return CameraInfo(width=width, height=height, k=[2.0, 0.0, 1.5, 0.0, 2.0, 1.0, 0.0, 0.0, 1.0])


def depth(mm: int, stamp_ms: int, shape=(3, 4), encoding: str = "16UC1") -> Image:
    dtype = np.uint8 if encoding == "mono8" else np.uint16
    return array_to_image(np.full(shape, mm, dtype), encoding, header(stamp_ms // 1000, stamp_ms % 1000 * MS))


def test_the_closest_stamp_wins_within_the_age_limit():
    buffer = DepthInput()
    buffer.set_colour_info(info())
    for mm, at in ((1000, 0), (2000, 90), (3000, 130)):
        buffer.add_depth(depth(mm, at))
    scene = buffer.pair(100 * MS, (3, 4), 50 * MS)
    assert scene.header.stamp.nanosec == 90 * MS and np.all(scene.depth[:, :] == 2.0)
    assert buffer.pair(125 * MS, (3, 4), 50 * MS).header.stamp.nanosec == 130 * MS
    with pytest.raises(NoDepth, match="none within depth_max_age_ms"):
        buffer.pair(400 * MS, (3, 4), 50 * MS)


@pytest.mark.parametrize("setup, kind", [
    (lambda b: None, "no depth image received"),
    (lambda b: b.add_depth(depth(1000, 0)), "no camera_info"),
    (lambda b: (b.add_depth(depth(1000, 0)), b.set_colour_info(info(8, 6))), "camera_info of another size"),
    (lambda b: (b.add_depth(depth(1000, 0, shape=(6, 8))), b.set_colour_info(info())),
     "depth of another size than the image and no depth/camera_info of its size"),
    (lambda b: (b.add_depth(depth(100, 0, encoding="mono8")), b.set_colour_info(info())), "unusable depth image"),
])
def test_each_missing_piece_has_its_own_reason(setup, kind):
    buffer = DepthInput()
    setup(buffer)
    with pytest.raises(NoDepth) as refused:
        buffer.pair(0, (3, 4), 50 * MS)
    assert refused.value.kind.startswith(kind)


def test_a_huge_depth_image_is_refused_before_it_is_converted():
    buffer = DepthInput()
    buffer.set_colour_info(info())
    buffer.add_depth(depth(1000, 0))
    with pytest.raises(NoDepth, match="unusable depth image: .*over the limit"):
        buffer.pair(0, (3, 4), 50 * MS, max_pixels=5)


def test_a_smaller_depth_image_is_registered_with_its_own_camera_info():
    buffer = DepthInput()
    buffer.set_colour_info(CameraInfo(width=8, height=6, k=[4.0, 0.0, 3.5, 0.0, 4.0, 2.5, 0.0, 0.0, 1.0]))
    buffer.set_depth_info(info())
    buffer.add_depth(depth(1500, 0))
    scene = buffer.pair(0, (6, 8), 50 * MS)
    # colour column of depth column u: 3.5 + (u - 1.5) * 2 = 2u + 0.5, rounded half to even: 0, 2, 4, 6
    assert scene.registration.cols.tolist() == [0, 2, 4, 6] and scene.registration.rows.tolist() == [0, 2, 4]


def test_depth_is_kept_by_time_so_a_frame_older_than_ten_depth_frames_still_pairs():
    """30 Hz depth, a colour frame 1.5 s old by the time SAM 2 is done with it: its own depth frame is there."""
    buffer = DepthInput()
    buffer.set_colour_info(info())
    for n in range(91):  # 0 .. 3000 ms every 33 ms (a count-of-10 buffer would span 330 ms)
        buffer.add_depth(depth(1000 + n, n * 33))
    scene = buffer.pair(1485 * MS, (3, 4), 0)  # frame 45's stamp, exactly
    assert scene.header.stamp.sec * 1000 + scene.header.stamp.nanosec // MS == 1485
    np.testing.assert_allclose(scene.depth[:, :], 1.045, rtol=1e-6)  # frame 45: 1045 mm
    # the automatic window is 2 s before the newest (2970 ms) at first: 990 ms is the oldest kept
    assert min(buffer.stamps()) == 990 * MS


def test_a_set_window_bounds_what_is_kept():
    buffer = DepthInput(window_s=0.5)
    for n in range(31):
        buffer.add_depth(depth(1000, n * 100))
    assert sorted(buffer.stamps()) == [n * 100 * MS for n in range(25, 31)]  # 2.5 .. 3.0 s


def test_a_clock_jumping_back_starts_the_window_over():
    buffer = DepthInput(window_s=1.0)
    for at in (5000, 5100, 5200, 100):  # a bag played again from its start
        buffer.add_depth(depth(1000, at))
    assert buffer.stamps() == {100 * MS}


def test_a_depth_frame_not_yet_arrived_is_waited_for_until_the_deadline():
    buffer = DepthInput()
    buffer.set_colour_info(info())
    buffer.add_depth(depth(1000, 0))  # depth flows, but is behind the colour frame at 100 ms
    later = threading.Timer(0.3, lambda: buffer.add_depth(depth(1500, 100)))
    later.start()
    scene = buffer.pair(100 * MS, (3, 4), 50 * MS, deadline=time.monotonic() + 20.0)
    later.join()
    assert scene.header.stamp.nanosec == 100 * MS
    np.testing.assert_allclose(scene.depth[:, :], 1.5, rtol=1e-6)


def test_no_wait_once_depth_has_passed_the_frame_or_has_stopped_or_is_cancelled():
    buffer = DepthInput(stalled_s=0.5)
    buffer.set_colour_info(info())
    buffer.add_depth(depth(1000, 120))  # newer than the frame: nothing closer can come
    start = time.monotonic()
    assert buffer.pair(100 * MS, (3, 4), 50 * MS, deadline=start + 20.0).header.stamp.nanosec == 120 * MS
    assert time.monotonic() - start < 10.0

    time.sleep(0.6)  # depth stopped: a frame newer than its last one is not waited for
    start = time.monotonic()
    with pytest.raises(NoDepth, match="none within"):
        buffer.pair(900 * MS, (3, 4), 50 * MS, deadline=start + 20.0)
    assert time.monotonic() - start < 10.0

    buffer.add_depth(depth(1000, 200))
    cancel = threading.Event()
    threading.Timer(0.2, lambda: (cancel.set(), buffer.wake())).start()
    start = time.monotonic()
    with pytest.raises(NoDepth, match="none within"):
        buffer.pair(900 * MS, (3, 4), 50 * MS, deadline=start + 20.0, cancel=cancel)
    assert time.monotonic() - start < 10.0


@pytest.mark.parametrize("big_endian", [False, True])
def test_32fc1_metres_in_either_byte_order_pair_with_holes_as_no_reading(big_endian):
    metres = np.array([[1.5, 0.0, np.inf, np.nan], [2.25, 2.25, -1.0, 0.5], [1.0, 1.0, 1.0, 1.0]], np.float32)
    buffer = DepthInput()
    buffer.set_colour_info(info())
    buffer.add_depth(array_to_image(metres, "32FC1", header(0, 0), big_endian=big_endian))
    got = buffer.pair(0, (3, 4), 0).depth[:, :]
    expected = [[1.5, nan, nan, nan], [2.25, 2.25, nan, 0.5], [1.0, 1.0, 1.0, 1.0]]  # 0, inf, NaN, < 0: none
    np.testing.assert_array_equal(got, np.array(expected, np.float32))


def test_16uc1_millimetres_big_endian_pair():
    buffer = DepthInput()
    buffer.set_colour_info(info())
    msg = Image(header=header(0, 0), height=3, width=4, encoding="16UC1", is_bigendian=1, step=8,
                data=bytes([0x05, 0xDC] * 12))  # 0x05DC = 1500 mm, high byte first
    buffer.add_depth(msg)
    np.testing.assert_allclose(buffer.pair(0, (3, 4), 0).depth[:, :], 1.5, rtol=1e-6)


def test_a_camera_info_with_no_camera_model_has_its_own_reason():
    buffer = DepthInput()
    buffer.set_colour_info(CameraInfo(width=4, height=3))  # K and P all zero: a driver that never set them
    buffer.add_depth(depth(1000, 0))
    with pytest.raises(NoDepth) as refused:
        buffer.pair(0, (3, 4), 50 * MS)
    assert refused.value.kind == "unusable camera_info" and "fx 0.0" in refused.value.detail


def test_a_depth_frame_exactly_depth_max_age_ms_away_is_used_and_one_a_nanosecond_older_is_not():
    buffer = DepthInput()
    buffer.set_colour_info(info())
    buffer.add_depth(depth(1000, 100))
    assert buffer.pair(150 * MS, (3, 4), 50 * MS).header.stamp.nanosec == 100 * MS
    with pytest.raises(NoDepth, match="none within depth_max_age_ms"):
        buffer.pair(150 * MS + 1, (3, 4), 50 * MS)
