"""Clicks become pixel prompts: rqt_image_view's pixels as they are, RViz's 3-D points projected."""
import numpy as np
import pytest
from geometry_msgs.msg import Point, PointStamped, Quaternion, Transform, Vector3
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from sam2_ros.core.prompts import PromptError
from sam2_ros.ros.clicks import from_pixel_click, in_camera_frame, project, rotate


def camera_info(frame_id="camera_optical", with_p=True) -> CameraInfo:
    """A 640x480 pinhole camera: f = 500 px, principal point (320, 240)."""
    k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    p = [500.0, 0.0, 320.0, 0.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0] if with_p else [0.0] * 12
    return CameraInfo(header=Header(frame_id=frame_id), width=640, height=480, k=k, p=p)


def test_an_rqt_image_view_click_is_a_foreground_pixel_for_a_new_object():
    prompt = from_pixel_click(Point(x=12.0, y=34.0, z=0.0))
    assert prompt.object_id == -1 and prompt.point_labels.tolist() == [1]
    np.testing.assert_array_equal(prompt.points, [[12, 34]])


@pytest.mark.parametrize("with_p", [True, False])
def test_a_point_in_front_of_the_camera_projects_as_worked_by_hand(with_p):
    # u = 500 * 0.1 / 1.0 + 320 = 370, v = 500 * -0.05 / 1.0 + 240 = 215; twice as far: 345, 227.5
    assert project(np.array([0.1, -0.05, 1.0]), camera_info(with_p=with_p)) == pytest.approx((370.0, 215.0))
    assert project(np.array([0.1, -0.05, 2.0]), camera_info(with_p=with_p)) == pytest.approx((345.0, 227.5))


def rectified_camera(tx: float = 0.0) -> CameraInfo:
    """A rectified camera whose P differs from its raw K (rectification moves f and the centre)."""
    k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    p = [450.0, 0.0, 310.0, tx, 0.0, 450.0, 235.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return CameraInfo(header=Header(frame_id="camera_optical"), width=640, height=480, k=k, p=p)


def test_a_rectified_cameras_click_projects_with_p_not_k():
    # P: u = 450 * 0.1 / 2 + 310 = 332.5, v = 450 * -0.2 / 2 + 235 = 190 (K would give 345, 190)
    assert project(np.array([0.1, -0.2, 2.0]), rectified_camera()) == pytest.approx((332.5, 190.0))


def test_a_right_stereo_cameras_click_takes_its_baseline_from_p():
    # Tx = -fx' * B = -450 * 0.12 = -54: u = (450 * 0.1 - 54) / 2 + 310 = 305.5, v as before 190
    assert project(np.array([0.1, -0.2, 2.0]), rectified_camera(tx=-54.0)) == pytest.approx((305.5, 190.0))


@pytest.mark.parametrize("z", [-1.0, 0.0])  # 0: on the camera's plane, it projects to no pixel
def test_a_point_behind_or_beside_the_camera_is_refused(z):
    with pytest.raises(PromptError, match="behind the camera"):
        project(np.array([0.1, 0.0, z]), camera_info())


def test_a_quarter_turn_about_z_takes_x_to_y():
    half = np.sqrt(0.5)
    np.testing.assert_allclose(rotate(np.array([0.0, 0.0, half, half]), np.array([1.0, 0.0, 0.0])), [0, 1, 0],
                               atol=1e-12)


def test_a_point_in_another_frame_needs_a_transform():
    click = PointStamped(header=Header(frame_id="map"), point=Point(x=1.0, y=2.0, z=3.0))
    with pytest.raises(PromptError, match="frame 'map', not the camera's optical frame 'camera_optical'"):
        in_camera_frame(click, camera_info(), None)
    half = np.sqrt(0.5)  # map -> optical: a quarter turn about z, then 1 m along z
    shift = Transform(translation=Vector3(x=0.0, y=0.0, z=1.0), rotation=Quaternion(x=0.0, y=0.0, z=half, w=half))
    transforms = {("camera_optical", "map"): shift}  # tf2's lookup_transform(target, source): map -> optical
    np.testing.assert_allclose(in_camera_frame(click, camera_info(), lambda target, source: transforms[target, source]),
                               [-2, 1, 4])
    same = PointStamped(header=Header(frame_id="camera_optical"), point=Point(x=1.0, y=2.0, z=3.0))
    np.testing.assert_array_equal(in_camera_frame(same, camera_info(), None), [1, 2, 3])
