"""Which depth frame a colour frame gets, and why it gets none: each reason is its own /diagnostics counter."""
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
    return array_to_image(np.full(shape, mm, dtype), encoding, header(0, stamp_ms * MS))


def test_the_closest_stamp_wins_within_the_age_limit():
    buffer = DepthInput()
    buffer.set_colour_info(info())
    for mm, at in ((1000, 0), (2000, 90), (3000, 130)):
        buffer.add_depth(depth(mm, at))
    scene = buffer.pair(100 * MS, (3, 4), 50 * MS)
    assert scene.header.stamp.nanosec == 90 * MS and np.all(scene.metres == 2.0)
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
