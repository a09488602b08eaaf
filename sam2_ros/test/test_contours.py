"""Mask geometry: contours with holes, simplification, area filter, box, centroid."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sam2_ros.core.contours import describe, find_contours
from sam2_ros.core.render import DrawnObject, color_of, overlay


def ring() -> np.ndarray:
    """A 60x60 square with a 20x20 hole, and a separate 3x3 speck."""
    mask = np.zeros((100, 120), bool)
    mask[10:70, 20:80] = True
    mask[30:50, 40:60] = False
    mask[90:93, 100:103] = True
    return mask


def test_a_ring_has_an_outer_boundary_and_a_hole_that_names_its_parent():
    contours = find_contours(ring())
    outers = [c for c in contours if not c.is_hole]
    holes = [c for c in contours if c.is_hole]
    assert len(outers) == 2 and len(holes) == 1
    parent = contours[holes[0].parent]
    assert not parent.is_hole and parent.points[:, 0].min() == 20 and parent.points[:, 1].max() == 69
    assert holes[0].points[:, 0].min() >= 39 and holes[0].points[:, 0].max() <= 60


def test_min_area_drops_small_regions():
    contours = find_contours(ring(), min_area=20)
    assert [c.is_hole for c in contours] == [False, True]


def test_a_hole_goes_with_its_region_when_the_region_is_too_small_even_if_the_hole_is_not():
    mask = np.zeros((40, 40), bool)
    mask[5:27, 5:27] = True  # a 22 x 22 square ...
    mask[6:26, 6:26] = False  # ... hollowed to a one-pixel frame: 484 - 400 = 84 pixels round a hole of 400
    assert [c.is_hole for c in find_contours(mask, min_area=84)] == [False, True]
    assert find_contours(mask, min_area=85) == []


@pytest.mark.parametrize("min_area, kept", [
    (5, ["speck", "line", "square", "hole"]),  # 9, 36, 3,200 and 400 pixels: all at least 5
    (9, ["speck", "line", "square", "hole"]),
    (10, ["line", "square", "hole"]),
    (36, ["line", "square", "hole"]),
    (37, ["square", "hole"]),
    (400, ["square", "hole"]),
    (401, ["square"]),
    (3200, ["square"]),
    (3201, []),
])
def test_min_area_counts_pixels_as_worked_by_hand(min_area, kept):
    mask = np.zeros((100, 140), bool)
    mask[10:70, 20:80] = True  # 60 x 60 = 3,600 pixels ...
    mask[30:50, 40:60] = False  # ... around a 20 x 20 hole of 400: the square has 3,200
    mask[90:93, 100:103] = True  # a 3 x 3 speck: 9 pixels (its polygon's area is 4)
    mask[80, 100:136] = True  # a one-pixel-wide line: 36 pixels (its polygon's area is 0)
    names = {(100, 90): "speck", (100, 80): "line", (20, 10): "square"}
    found = []
    for contour in find_contours(mask, min_area=min_area):
        x, y = contour.points.min(axis=0).astype(int)
        found.append("hole" if contour.is_hole else names[(x, y)])
    assert sorted(found) == sorted(kept), (min_area, found)


def test_simplification_keeps_the_shape_with_fewer_vertices():
    disc = np.zeros((200, 200), np.uint8)
    yy, xx = np.mgrid[:200, :200]
    disc[(yy - 100) ** 2 + (xx - 100) ** 2 < 80 ** 2] = 1
    exact, simple = find_contours(disc)[0], find_contours(disc, epsilon=2.0)[0]
    assert len(simple.points) < len(exact.points) / 3
    assert np.abs(np.hypot(*(simple.points - 100).T) - 80).max() < 3


def test_box_area_and_centroid_of_a_mask():
    geometry = describe(ring())
    assert geometry.box == (20, 10, 83, 83)
    assert geometry.area == 60 * 60 - 20 * 20 + 9
    mask = np.zeros((50, 50), bool)
    mask[10:20, 30:40] = True
    assert describe(mask).centroid == pytest.approx((34.5, 14.5))


def test_an_empty_mask_has_no_contours_and_a_zero_box():
    geometry = describe(np.zeros((10, 10), bool))
    assert geometry.area == 0 and geometry.box == (0, 0, 0, 0) and geometry.contours == []


@settings(max_examples=80, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_geometry_is_opencvs_on_the_whole_frame_wherever_the_mask_lies(mask):
    """Describe works on the object's box; OpenCV given the whole frame is the reference (edges included)."""
    whole = mask.astype(np.uint8)
    geometry = describe(mask)
    found, hierarchy = cv2.findContours(whole, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    expected = sorted((bool(h[3] >= 0), c.reshape(-1, 2).tolist()) for c, h in zip(found, hierarchy[0])) \
        if hierarchy is not None else []
    assert sorted((c.is_hole, c.points.astype(int).tolist()) for c in geometry.contours) == expected
    moments = cv2.moments(whole, binaryImage=True)
    assert geometry.area == moments["m00"]
    assert geometry.box == (tuple(cv2.boundingRect(whole)) if mask.any() else (0, 0, 0, 0))
    if mask.any():
        assert geometry.centroid == pytest.approx((moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]))


def test_overlay_tints_masks_in_each_objects_colour_and_leaves_the_rest():
    image = np.full((120, 160, 3), 100, np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[40:80, 40:100] = True
    drawn = overlay(image, [DrawnObject(object_id=3, mask=mask, label="cup")], alpha=0.5)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    inside = drawn[60, 70].astype(int)
    # id 3: hue 3 * 0.618034 mod 1 = 0.854102, HSV(0.854102, 0.85, 1) = RGB (255, 38, 227) by hand;
    # half of it over grey 100 is (177.5, 69, 163.5)
    np.testing.assert_allclose(inside, [177.5, 69, 163.5], atol=1)
    assert (drawn[5, 150] == 100).all()
    assert color_of(1) != color_of(2)


def segment_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance from a point to the segment a-b (a plain formula, not OpenCV's)."""
    ab, ap = b - a, point - a
    t = 0.0 if not ab.any() else min(max(float(ap @ ab) / float(ab @ ab), 0.0), 1.0)
    return float(np.hypot(*(ap - t * ab)))


def star(points: int = 7, size: int = 160) -> np.ndarray:
    """A filled star with sharp and shallow turns: what simplification trims."""
    import cv2
    angles = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False)
    radii = np.where(np.arange(2 * points) % 2, 30.0, 70.0)
    polygon = np.stack([80 + radii * np.cos(angles), 80 + radii * np.sin(angles)], 1).round().astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [polygon], 1)
    return mask.astype(bool)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0, 4.0])
def test_every_exact_boundary_pixel_lies_within_epsilon_of_the_simplified_polygon(epsilon):
    """Douglas-Peucker's promise, checked with a plain loop: the simplification moves no boundary further."""
    mask = star()
    (exact,), (simple,) = find_contours(mask), find_contours(mask, epsilon)
    assert 3 <= len(simple.points) < len(exact.points)
    edges = list(zip(simple.points, np.roll(simple.points, -1, axis=0)))
    worst = max(min(segment_distance(p, a, b) for a, b in edges) for p in exact.points.astype(np.float64))
    assert worst <= epsilon + 1e-9, f"an exact boundary pixel is {worst:.3f} px from the simplified polygon"
