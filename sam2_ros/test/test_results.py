"""Masks -> SegmentationResult: geometry, packed contours, cropped masks, label image."""
from dataclasses import dataclass

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from rosharness import full_mask, header, rasterise
from sam2_ros.core.contours import find_contours
from sam2_ros.core.render import DrawnObject, overlay
from sam2_ros.ros.conversions import image_to_array
from sam2_ros.ros.results import (
    OutputSettings,
    ResultBuilder,
    label_image,
    overlay_image,
    result_message,
    unpack_contours,
)
from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject


@dataclass
class Obj:
    object_id: int
    mask: np.ndarray
    score: float = 0.9
    presence: float = 0.99
    label: str = ""


def rings(hw=(120, 160)) -> np.ndarray:
    """Two squares with a hole each, an island inside one hole, and a speck."""
    mask = np.zeros(hw, bool)
    mask[10:70, 20:80] = True
    mask[30:50, 40:60] = False
    mask[36:44, 46:54] = True  # island in the hole
    mask[80:110, 100:150] = True
    mask[90:100, 120:130] = False
    mask[5, 150] = True
    return mask


def test_packed_contours_unpack_to_the_core_polygons_and_redraw_the_mask():
    mask = rings()
    result = result_message([Obj(3, mask)], header(5), mask.shape, OutputSettings())
    obj = result.objects[0]
    unpacked = unpack_contours(obj)
    expected = find_contours(mask)
    assert [(c.is_hole, c.parent) for c in unpacked] == [(c.is_hole, c.parent) for c in expected]
    assert sum(c.is_hole for c in unpacked) == 2 and len(unpacked) == 6
    for ours, core in zip(unpacked, expected):
        np.testing.assert_array_equal(ours.points, core.points)
    np.testing.assert_array_equal(rasterise(unpacked, mask.shape), mask)


def test_an_object_carries_its_box_area_centroid_and_cropped_mask_and_survives_the_wire():
    mask = rings()
    result = result_message([Obj(3, mask, label="cup")], header(5), mask.shape, OutputSettings())
    received = deserialize_message(serialize_message(result), SegmentationResult)
    obj = received.objects[0]
    assert received.header == header(5) and (received.height, received.width) == mask.shape
    assert (obj.object_id, obj.label, obj.visible, obj.area) == (3, "cup", True, mask.sum())
    ys, xs = np.nonzero(mask)
    assert (obj.box.x_offset, obj.box.y_offset) == (xs.min(), ys.min())
    assert (obj.box.width, obj.box.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert (obj.centroid.x, obj.centroid.y) == pytest.approx((xs.mean(), ys.mean()), abs=1e-4)
    assert set(np.unique(image_to_array(obj.mask))) == {0, 255}
    np.testing.assert_array_equal(full_mask(obj, mask.shape), mask)
    np.testing.assert_array_equal(rasterise(unpack_contours(obj), mask.shape), mask)


def test_an_absent_or_low_scoring_object_is_reported_not_visible_with_no_geometry():
    mask = rings()
    settings = OutputSettings(score_threshold=0.5)
    absent, weak = result_message([Obj(1, mask, presence=0.2), Obj(2, mask, score=0.3)], Header(),
                                  mask.shape, settings).objects
    for obj in (absent, weak):
        assert not obj.visible and obj.area == 0 and obj.mask.width == 0
        assert unpack_contours(obj) == [] and len(obj.contour_points) == 0
    builder = ResultBuilder(Header(), mask.shape, settings)
    builder.build([Obj(1, mask, presence=0.2)])
    assert not label_image(builder.described, Header(), mask.shape, settings).data.tobytes().strip(b"\0")


def test_the_builder_describes_objects_handed_over_early_and_redescribes_a_replaced_one():
    first, second = rings(), np.zeros((120, 160), bool)
    second[0:10, 0:10] = True
    builder = ResultBuilder(header(7), first.shape, OutputSettings())
    builder.add(Obj(2, first))
    early = Obj(1, first)
    builder.add(early)
    replaced = Obj(1, second)  # e.g. a correction after the frame was tracked
    result = builder.build([replaced, Obj(2, first)], decode_ms=4.0)
    assert [o.object_id for o in result.objects] == [1, 2] and result.decode_ms == 4.0
    assert result.objects[0].area == 100 and result.objects[1].area == first.sum()


def test_the_overlay_message_shows_what_the_core_draws_and_leaves_the_camera_image_as_it_was():
    camera = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    before = camera.copy()
    cup = np.zeros((120, 160), bool)
    cup[60:100, 20:60] = True
    builder = ResultBuilder(header(3), cup.shape, OutputSettings())
    builder.build([Obj(1, rings(), label="rings"), Obj(2, cup, label="cup")])
    msg = overlay_image(camera, builder.described, header(3))
    expected = overlay(before, [DrawnObject(1, rings(), "rings"), DrawnObject(2, cup, "cup")])  # finds its own outlines
    np.testing.assert_array_equal(image_to_array(msg), expected)
    np.testing.assert_array_equal(camera, before)


def test_contour_arrays_that_disagree_are_refused():
    obj = SegmentedObject(contour_points=[0.0, 0.0, 4.0, 0.0, 4.0, 4.0], contour_lengths=[4], contour_parents=[-1])
    with pytest.raises(ValueError, match="disagree"):
        unpack_contours(obj)


@pytest.mark.parametrize("presence, score, visible", [
    (0.5, 0.9, False),  # presence 0.5 is object_score_logits 0: Meta's predictor (logits > 0) calls it absent
    (0.5000001, 0.9, True),
    (0.99, 0.5, True),  # a score equal to score_threshold is kept: "masks with a lower predicted IoU" go
    (0.99, 0.4999999, False),
])
def test_visibility_at_its_two_boundaries(presence, score, visible):
    mask = rings()
    (obj,) = result_message([Obj(1, mask, score=score, presence=presence)], Header(), mask.shape,
                            OutputSettings(score_threshold=0.5)).objects
    assert obj.visible == visible and (obj.area > 0) == visible
