"""Clicks -> pixel prompts: rqt_image_view's pixel clicks, and RViz's 3-D points projected into the image.

rqt_image_view ("publish click location") publishes the clicked pixel as a plain
geometry_msgs/Point on `<viewed topic>_mouse_left`. RViz's Publish Point tool publishes a
3-D geometry_msgs/PointStamped in its fixed frame: in the camera's optical frame it projects
into the image with the camera info; a point in another frame needs tf2 to get there.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import CameraInfo

from sam2_ros.core.prompts import ASSIGN_NEW_ID, FOREGROUND, Prompt, PromptError


def click_prompt(u: float, v: float) -> Prompt:
    """Make a foreground click that starts a new object."""
    return Prompt(object_id=ASSIGN_NEW_ID, points=np.array([[u, v]], np.float32),
                  point_labels=np.array([FOREGROUND], np.int32))


def from_pixel_click(msg: Point) -> Prompt:
    """Turn rqt_image_view's click (x, y: pixels of the image it shows) into a prompt."""
    return click_prompt(msg.x, msg.y)


def project(xyz: np.ndarray, info: CameraInfo) -> tuple[float, float]:
    """Return the pixel (u, v) of a 3-D point in the camera's optical frame (x right, y down, z forward).

    Uses the projection matrix P (rectified image), or K where P is unset.
    """
    p = np.asarray(info.p, np.float64).reshape(3, 4)
    if not p.any():
        p = np.hstack([np.asarray(info.k, np.float64).reshape(3, 3), np.zeros((3, 1))])
    if not p.any():
        raise PromptError("camera_info has neither P nor K: cannot project a 3-D click into the image")
    u, v, w = p @ np.append(np.asarray(xyz, np.float64), 1.0)
    if not w > 0:
        raise PromptError(f"clicked point {np.round(xyz, 3).tolist()} is behind the camera (z <= 0 in "
                          f"'{info.header.frame_id}'): click in front of it")
    return float(u / w), float(v / w)


def rotate(quaternion_xyzw: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Rotate a vector by a unit quaternion (x, y, z, w), as tf2 does."""
    q = np.asarray(quaternion_xyzw, np.float64)
    u, w = q[:3], q[3]
    v = np.asarray(vector, np.float64)
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def in_camera_frame(msg: PointStamped, info: CameraInfo, lookup) -> np.ndarray:
    """Return the clicked point in the camera's optical frame.

    `lookup(target, source)` returns a geometry_msgs/Transform (tf2's, where tf2_ros is
    installed) or is None, and then only points already in the optical frame are taken.
    """
    xyz = np.array([msg.point.x, msg.point.y, msg.point.z], np.float64)
    source, target = msg.header.frame_id, info.header.frame_id
    if not source or source == target:
        return xyz
    if lookup is None:
        raise PromptError(f"clicked point is in frame '{source}', not the camera's optical frame '{target}': "
                          "install tf2_ros (the node then transforms it), or set RViz's fixed frame to the "
                          "optical frame")
    transform = lookup(target, source)
    r, t = transform.rotation, transform.translation
    return rotate(np.array([r.x, r.y, r.z, r.w]), xyz) + np.array([t.x, t.y, t.z])
