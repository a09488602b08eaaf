"""Overlays for people: each mask tinted in its own colour, outlined and labelled; the rest untouched."""
import colorsys

import cv2
import numpy as np

from sam2_ros.core.render import DrawnObject, color_of, overlay


def test_each_id_has_a_stable_colour_a_golden_ratio_hue_step_from_the_last():
    for object_id in (1, 2, 3, 200):
        hue = (object_id * 0.618033988749895) % 1.0  # worked out here with colorsys, as a person would
        expected = tuple(int(v * 255) for v in colorsys.hsv_to_rgb(hue, 0.85, 1.0))
        assert color_of(object_id) == expected
    assert len({color_of(i) for i in range(1, 33)}) == 32


def test_a_mask_is_tinted_45_percent_its_colour_and_pixels_far_from_it_are_untouched():
    image = np.full((120, 160, 3), 100, np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[60:100, 60:120] = True
    drawn = overlay(image, [DrawnObject(1, mask, "cup")])
    red, green, blue = color_of(1)
    inside = drawn[80, 90].astype(int)  # inside the mask, away from its outline
    expected = np.rint(0.45 * np.array([red, green, blue]) + 0.55 * 100).astype(int)
    assert np.abs(inside - expected).max() <= 1, (inside, expected)
    assert (drawn[:30] == 100).all() and (drawn[:, :40] == 100).all(), "far from the mask and its label"
    assert (drawn[40:58, 60:120] != 100).any(), "the id and label written just above the mask"


def test_no_objects_leave_the_image_as_it_was():
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert np.array_equal(overlay(image, []), image)


def test_where_masks_overlap_the_later_objects_tint_is_blended_once_with_the_camera_image():
    image = np.full((120, 160, 3), 100, np.uint8)
    first, second = np.zeros((120, 160), bool), np.zeros((120, 160), bool)
    first[20:100, 20:100] = True
    second[40:110, 60:150] = True  # overlaps the first on rows 40..99, columns 60..99
    drawn = overlay(image, [DrawnObject(1, first), DrawnObject(2, second)])
    for y, x, object_id in ((70, 80, 2), (30, 40, 1), (105, 120, 2)):  # overlap, first only, second only
        expected = np.rint(0.45 * np.array(color_of(object_id)) + 0.55 * 100).astype(int)
        assert np.abs(drawn[y, x].astype(int) - expected).max() <= 1, (y, x, drawn[y, x], expected)


def test_a_mask_touching_the_frames_edge_is_outlined_along_it():
    image = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[:, 50:] = True  # the right third, to the frame's top, bottom and right edges
    drawn = overlay(image, [DrawnObject(3, mask)])
    outline = drawn[30, 50].astype(int)  # the left edge is drawn in the object's colour, not just tinted
    tinted = np.rint(0.45 * np.array(color_of(3)) + 0.55 * 100).astype(int)
    assert np.abs(outline - np.array(color_of(3))).max() < np.abs(tinted - np.array(color_of(3))).max()
    assert (drawn[:, :45] == 100).all(), "left of the mask untouched"


def test_a_box_and_outline_handed_over_draw_the_same_pixels_as_finding_them():
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    mask = np.zeros((90, 120), bool)
    mask[20:70, 30:100] = True
    mask[35:50, 50:70] = False  # a hole: two polygons
    found, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)  # OpenCV's own
    given = DrawnObject(4, mask, "box", (30, 20, 70, 50), [c.reshape(-1, 2) for c in found])
    assert np.array_equal(overlay(image, [given]), overlay(image, [DrawnObject(4, mask, "box")]))
