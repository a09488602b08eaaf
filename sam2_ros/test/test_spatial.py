"""The 3D outputs as messages: the cloud's colours through the registration, RViz's boxes in the depth frame."""
import numpy as np
import pytest
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker

from rosharness import header
from sam2_ros.core.geometry import Intrinsics, object_3d, register
from sam2_ros.ros.depth import DepthScene
from sam2_ros.ros.spatial import cloud_message, marker_array
from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject


def test_a_half_size_depth_pixel_takes_the_colour_of_the_colour_pixel_it_sees():
    """Depth column j, centre 1.5 and f 100, sees colour column rint(3.5 + (j - 1.5) * 2) = 2j (ties to even)."""
    colour = Intrinsics(fx=200.0, fy=200.0, cx=3.5, cy=3.5, width=8, height=8)
    depth = Intrinsics(fx=100.0, fy=100.0, cx=1.5, cy=1.5, width=4, height=4)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = np.arange(8)[:, None] * 10, np.arange(8)[None, :] * 10  # red = 10 row, green = 10 col
    metres = np.ones((4, 4), np.float32)
    solid = object_3d(np.ones((4, 4), bool), metres, depth, erode_px=0, min_pixels=1)
    scene = DepthScene(header(7, frame_id="depth"), metres, depth, register(colour, depth))
    cloud = cloud_message(scene, {5: solid}, 0.0, rgb, header(7, frame_id="color"))
    points = np.frombuffer(bytes(cloud.data), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                        ("object_id", "<u4"), ("rgb", "<u4")]))
    assert cloud.header == header(7, frame_id="depth") and cloud.width == 16 and set(points["object_id"]) == {5}
    seen = {(round(p["x"] * 100 + 1.5), round(p["y"] * 100 + 1.5)): (p["rgb"] >> 16, (p["rgb"] >> 8) & 255)
            for p in points}  # depth (column, row) -> (red, green) of its point
    assert seen == {(j, i): (20 * i, 20 * j) for i in range(4) for j in range(4)}


def flat_cup() -> SegmentedObject:
    """3D points all at 1.2 m: a face seen head-on, so its box has no depth."""
    return SegmentedObject(object_id=2, label="cup", visible=True, has_3d=True,
                           min_3d=Point(x=-0.1, y=0.0, z=1.2), max_3d=Point(x=0.1, y=0.3, z=1.2))


def test_markers_are_in_the_depth_frame_and_a_flat_box_keeps_five_millimetres_so_rviz_draws_it():
    result = SegmentationResult(header=header(3, frame_id="color"), depth_header=header(3, frame_id="depth"),
                                objects=[flat_cup(), SegmentedObject(object_id=4, visible=True)])
    delete, cube, text = marker_array(result).markers  # object 4 has no 3D: no markers
    assert delete.action == Marker.DELETEALL
    # no lifetime: each frame's DELETEALL replaces them; one would make them blink between frames at 3 frames/s
    assert cube.lifetime.sec == cube.lifetime.nanosec == text.lifetime.sec == text.lifetime.nanosec == 0
    assert not cube.frame_locked and not text.frame_locked
    assert all(m.header == header(3, frame_id="depth") for m in (delete, cube, text))
    assert (cube.id, cube.type, cube.scale.x, cube.scale.y, cube.scale.z) == \
        (2, Marker.CUBE, pytest.approx(0.2), pytest.approx(0.3), 0.005)
    assert (cube.pose.position.x, cube.pose.position.y, cube.pose.position.z) == pytest.approx((0.0, 0.15, 1.2))
    assert text.text == "2: cup" and text.pose.position.y == pytest.approx(-0.03)  # above it: y points down
