"""Masks in metres, checked against closed-form scenes: a plane, a box in front of it, known cameras."""
import struct

import numpy as np
import pytest

from sam2_ros.core.geometry import (
    DepthError,
    DepthImage,
    Intrinsics,
    cloud_array,
    depth_in_metres,
    mask_on_depth,
    object_3d,
    register,
    voxel_downsample,
)

# 640x480 camera, focal 500 px, principal point at the image centre (pixel centres are integers)
CAMERA = Intrinsics(fx=500.0, fy=500.0, cx=319.5, cy=239.5, width=640, height=480)
ROWS, COLS = slice(200, 280), slice(300, 380)  # an 80x80 pixel face of a box


def scene(object_m: float = 1.0, plane_m: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A wall at plane_m, a box face at object_m; returns (mask, depth in millimetres, 16UC1)."""
    depth = np.full((480, 640), round(plane_m * 1000), np.uint16)
    depth[ROWS, COLS] = round(object_m * 1000)
    mask = np.zeros((480, 640), bool)
    mask[ROWS, COLS] = True
    return mask, depth


def test_depth_encodings_become_metres_and_no_reading_becomes_nan():
    mm = np.array([[0, 1, 1500, 65535]], np.uint16)
    np.testing.assert_allclose(depth_in_metres(mm, "16UC1"), [[np.nan, 0.001, 1.5, 65.535]], rtol=1e-6)
    m = np.array([[np.nan, np.inf, -1.0, 0.0, 2.25]], np.float32)
    np.testing.assert_array_equal(depth_in_metres(m, "32FC1"), [[np.nan, np.nan, np.nan, np.nan, 2.25]])
    with pytest.raises(DepthError, match="depth encoding 'rgb8' is not supported: use 16UC1"):
        depth_in_metres(m, "rgb8")


def test_a_box_face_at_one_metre_has_its_hand_worked_centroid_and_extent():
    mask, depth = scene()
    found = object_3d(mask, depth_in_metres(depth, "16UC1"), CAMERA, erode_px=2)
    # columns 300..379 eroded by 2 -> 302..377, mean 339.5: x = (339.5 - 319.5) / 500 * 1 m = 0.04
    # rows 200..279 -> 202..277, mean 239.5: y = 0;  z = 1
    np.testing.assert_allclose(found.centroid, [0.04, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(found.minimum, [(302 - 319.5) / 500, (202 - 239.5) / 500, 1.0], atol=1e-6)
    np.testing.assert_allclose(found.maximum, [(377 - 319.5) / 500, (277 - 239.5) / 500, 1.0], atol=1e-6)
    assert found.count == 76 * 76  # a 5x5 ellipse reaches 2 px along rows and columns: 2 px off each side


def test_non_square_pixels_back_project_columns_with_fx_and_rows_with_fy():
    mask, depth = scene()
    camera = Intrinsics(fx=500.0, fy=400.0, cx=319.5, cy=239.5, width=640, height=480)
    found = object_3d(mask, depth_in_metres(depth, "16UC1"), camera, erode_px=2)
    # as above, rows 202..277 now divided by fy 400: y from -37.5 / 400 to 37.5 / 400
    np.testing.assert_allclose(found.minimum, [(302 - 319.5) / 500, -37.5 / 400, 1.0], atol=1e-6)
    np.testing.assert_allclose(found.maximum, [(377 - 319.5) / 500, 37.5 / 400, 1.0], atol=1e-6)


def test_the_float_encoding_gives_the_same_points():
    mask, depth = scene(0.75)
    metres = depth.astype(np.float32) / 1000
    from_mm = object_3d(mask, depth_in_metres(depth, "16UC1"), CAMERA)
    from_m = object_3d(mask, depth_in_metres(metres, "32FC1"), CAMERA)
    np.testing.assert_allclose(from_m.centroid, [0.04 * 0.75, 0.0, 0.75], atol=1e-6)
    np.testing.assert_allclose(from_mm.points, from_m.points, atol=1e-6)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_a_depth_image_read_where_the_object_is_gives_the_points_of_the_whole_image_in_metres(encoding):
    mask, depth = scene(0.75)
    depth[::7, ::5] = 0  # holes: no reading
    stored = depth if encoding == "16UC1" else depth.astype(np.float32) / 1000
    lazy = object_3d(mask, DepthImage(stored, encoding), CAMERA)
    whole = object_3d(mask, depth_in_metres(stored, encoding), CAMERA)
    # by hand: the 80x80 face eroded by 2 px is rows 202..277, columns 302..377, less the holes on it
    readings = sum(1 for r in range(202, 278) for c in range(302, 378) if r % 7 or c % 5)
    assert lazy.count == readings
    np.testing.assert_allclose(lazy.coordinates[2], 0.75, rtol=1e-6)
    np.testing.assert_array_equal(lazy.points, whole.points)
    np.testing.assert_array_equal(lazy.centroid, whole.centroid)
    with pytest.raises(DepthError, match="'mono8' is not supported"):
        DepthImage(depth.astype(np.uint8), "mono8")


def test_the_masks_box_given_by_hand_gives_the_points_found_without_it():
    mask, depth = scene(0.75)
    metres = depth_in_metres(depth, "16UC1")
    given = object_3d(mask, metres, CAMERA, box=(300, 200, 80, 80))  # x, y, width, height of ROWS, COLS
    found = object_3d(mask, metres, CAMERA)
    assert given.count == 76 * 76  # the face eroded by 2 px on every side
    np.testing.assert_array_equal(given.points, found.points)
    np.testing.assert_array_equal(given.centroid, found.centroid)

def test_depth_half_the_colour_size_is_registered_with_both_camera_models():
    colour = Intrinsics(1000.0, 1000.0, 639.5, 359.5, 1280, 720)
    depth_camera = Intrinsics(500.0, 500.0, 319.5, 179.5, 640, 360)  # same field of view, half the pixels
    mask = np.zeros((720, 1280), bool)
    mask[300:460, 600:760] = True
    registration = register(colour, depth_camera)
    # colour column of depth column u: 639.5 + (u - 319.5) * 2 = 2u (+ 0.5, rounded to even): u = 300..379
    on_depth = mask_on_depth(mask, registration)
    assert np.array_equal(np.nonzero(on_depth.any(axis=0))[0], np.arange(300, 380))
    assert np.array_equal(np.nonzero(on_depth.any(axis=1))[0], np.arange(150, 230))
    depth = np.full((360, 640), 3000, np.uint16)
    depth[150:230, 300:380] = 1500
    found = object_3d(on_depth, depth_in_metres(depth, "16UC1"), depth_camera)
    # mean depth column 339.5 -> x = 20 / 500 * 1.5 = 0.06; mean row 189.5 -> y = 10 / 500 * 1.5 = 0.03
    np.testing.assert_allclose(found.centroid, [0.06, 0.03, 1.5], atol=1e-6)


def test_depth_pixels_outside_the_colour_image_see_no_mask():
    colour = Intrinsics(500.0, 500.0, 99.5, 99.5, 200, 200)
    wider = Intrinsics(500.0, 500.0, 149.5, 99.5, 300, 200)  # the depth camera sees 50 more columns each side
    registration = register(colour, wider)
    assert registration.cols[:50].tolist() == [-1] * 50 and registration.cols[50] == 0
    assert registration.cols[249] == 199 and registration.cols[250:].tolist() == [-1] * 50
    on_depth = mask_on_depth(np.ones((200, 200), bool), registration)
    assert on_depth[:, 50:250].all() and not on_depth[:, :50].any() and not on_depth[:, 250:].any()


def test_holes_are_ignored_and_an_object_without_depth_has_no_3d():
    mask, depth = scene()
    depth[230:250, 330:350] = 0  # a 20x20 hole in the middle of the face
    metres = depth_in_metres(depth, "16UC1")
    with_hole = object_3d(mask, metres, CAMERA)
    whole = object_3d(*scene()[:1], depth_in_metres(scene()[1], "16UC1"), CAMERA)
    assert with_hole.count == whole.count - 400
    np.testing.assert_allclose(with_hole.centroid, [0.04, 0.0, 1.0], atol=1e-6)  # the hole is centred
    depth[ROWS, COLS] = 0
    assert object_3d(mask, depth_in_metres(depth, "16UC1"), CAMERA) is None


def test_flying_pixels_at_the_border_and_a_mask_that_spills_onto_the_wall_move_the_centroid_under_1mm():
    mask, depth = scene()
    ring = np.zeros_like(mask)
    ring[196:284, 296:384] = True
    ring[204:276, 304:376] = False  # 4 px each side of the edge mixes box and wall
    depth[ring] = np.random.default_rng(0).integers(1000, 2000, ring.sum())
    spilled = np.zeros_like(mask)
    spilled[194:286, 294:386] = True  # SAM 2's mask 6 px too big: wall pixels at 2 m inside it
    found = object_3d(spilled, depth_in_metres(depth, "16UC1"), CAMERA)
    assert np.abs(found.centroid - [0.04, 0.0, 1.0]).max() < 1e-3
    assert found.minimum[2] == pytest.approx(1.0) and 1.0 <= found.maximum[2] <= 1.01  # the 1 cm band


def test_with_realistic_noise_dropouts_and_border_artefacts_the_centroid_is_within_1cm():
    rng = np.random.default_rng(1)
    mask, depth = scene(1.2, 2.5)
    metres = depth.astype(np.float32) / 1000 + rng.normal(0, 0.004 * 1.2 ** 2, depth.shape).astype(np.float32)
    metres[rng.random(depth.shape) < 0.05] = 0  # 5 % dropouts
    edge = mask ^ np.pad(mask[3:-3, 3:-3], 3)
    metres[edge] = rng.uniform(1.2, 2.5, edge.sum())
    found = object_3d(mask, depth_in_metres(metres, "32FC1"), CAMERA)
    assert np.abs(found.centroid - [0.04 * 1.2, 0.0, 1.2]).max() < 0.01


def test_voxels_average_the_points_of_one_object_and_never_mix_objects():
    points = np.array([[0.01, 0.01, 1.01], [0.03, 0.02, 1.03], [0.01, 0.01, 1.01], [0.12, 0.0, 1.0]], np.float32)
    ids = np.array([1, 1, 2, 1], np.uint32)
    colours = np.array([[10, 0, 0], [30, 0, 0], [0, 200, 0], [0, 0, 50]], np.uint8)
    out, out_ids, out_colours = voxel_downsample(points, ids, 0.05, colours)
    rows = sorted(zip(out_ids.tolist(), np.round(out.astype(np.float64), 4).tolist(), out_colours.tolist()))
    assert rows == [(1, [0.02, 0.015, 1.02], [20, 0, 0]), (1, [0.12, 0.0, 1.0], [0, 0, 50]),
                    (2, [0.01, 0.01, 1.01], [0, 200, 0])]
    same, same_ids, _ = voxel_downsample(points, ids, 0.0)
    assert same is points and same_ids is ids


def test_the_cloud_layout_is_x_y_z_float32_then_object_id_then_packed_rgb():
    cloud = cloud_array(np.array([[1.0, -2.0, 0.5]], np.float32), np.array([7]), np.array([[255, 128, 1]], np.uint8))
    assert cloud.dtype.itemsize == 20
    assert cloud.tobytes() == struct.pack("<fffII", 1.0, -2.0, 0.5, 7, 0xFF8001)
    assert cloud_array(np.zeros((2, 3), np.float32), np.array([1, 2])).dtype.itemsize == 16


def test_an_unset_camera_model_is_refused():
    with pytest.raises(DepthError, match="camera model unusable"):
        Intrinsics.from_matrix(np.zeros(9), 640, 480)
    p = [500.0, 0, 320, 0, 0, 510, 240, 0, 0, 0, 1, 0]
    assert Intrinsics.from_matrix(np.array(p), 640, 480) == Intrinsics(500.0, 510.0, 320.0, 240.0, 640, 480)


def test_a_camera_model_refused_for_its_principal_point_says_so():
    """The focal lengths fine, cx not a number: the refusal shows the value at fault."""
    k = [60.0, 0, float("nan"), 0, 60.0, 23.5, 0, 0, 1]
    with pytest.raises(DepthError, match=r"fx 60.0, fy 60.0, cx nan, cy 23.5, 64x48"):
        Intrinsics.from_matrix(np.array(k), 64, 48)


def test_a_one_pixel_diagonal_keeps_its_pixels_through_erosion_and_the_subsampled_median():
    mask = np.zeros((480, 640), bool)
    rows = np.arange(479)
    mask[rows, rows + 1] = True  # never on a row and a column both divisible by the median's grid step (5)
    depth = np.full((480, 640), 2000, np.uint16)
    depth[mask] = 1000
    found = object_3d(mask, depth_in_metres(depth, "16UC1"), CAMERA)
    assert found.count == 479 and found.centroid[2] == pytest.approx(1.0)
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    np.testing.assert_array_equal(found.colours(rgb, register(CAMERA, CAMERA)), rgb[rows, rows + 1])


def test_each_point_takes_the_colour_of_the_colour_pixel_its_depth_pixel_sees():
    colour = Intrinsics(600.0, 600.0, 319.5, 239.5, 640, 480)
    half = Intrinsics(300.0, 300.0, 159.5, 119.5, 320, 240)  # depth at half the size: depth (r, c) sees (2r, 2c)
    rgb = np.random.default_rng(1).integers(0, 256, (480, 640, 3), np.uint8)
    mask = np.zeros((240, 320), bool)
    mask[100:110, 50:70] = True
    depth = np.where(mask, 1000, 2000).astype(np.uint16)
    found = object_3d(mask, depth_in_metres(depth, "16UC1"), half, erode_px=0)
    rows, cols = np.nonzero(mask)  # the points' order: row by row
    assert found.count == 200
    np.testing.assert_array_equal(found.colours(rgb, register(colour, half)), rgb[2 * rows, 2 * cols])


def test_an_object_with_exactly_depth_min_pixels_readings_has_3d_and_one_fewer_has_none():
    depth = np.full((480, 640), 2000, np.uint16)
    mask = np.zeros((480, 640), bool)
    mask[240, 300:310] = True  # ten pixels in a row, not eroded
    metres = depth_in_metres(depth, "16UC1")
    found = object_3d(mask, metres, CAMERA, erode_px=0, min_pixels=10)
    assert found is not None and found.count == 10
    mask[240, 309] = False
    assert object_3d(mask, metres, CAMERA, erode_px=0, min_pixels=10) is None


def test_readings_within_a_centimetre_of_a_flat_faces_depth_stay_in_its_extent_and_further_ones_do_not():
    """A face at 1.000 m: its spread is 0, so the band is min_band_m (1 cm) and decides the extent."""
    mask, depth = scene()
    depth[ROWS, COLS][10, 10:15] = 1009  # 9 mm behind: the same face, a noisy reading
    within = object_3d(mask, depth_in_metres(depth, "16UC1"), CAMERA, erode_px=0)
    assert within.maximum[2] == pytest.approx(1.009) and within.count == 80 * 80
    depth[ROWS, COLS][10, 10:15] = 1011  # 11 mm behind: the background seen through the mask's slack
    beyond = object_3d(mask, depth_in_metres(depth, "16UC1"), CAMERA, erode_px=0)
    assert beyond.maximum[2] == pytest.approx(1.0) and beyond.count == 80 * 80 - 5


@pytest.mark.parametrize("voxel, low, high, first_id",
                         [(0.05, -0.2, 0.3, 1), (0.05, -0.2, 0.3, 60000), (0.05, -2.0, 3.0, 1), (1e-9, -2.0, 3.0, 1)],
                         ids=["objects a few voxels across", "ids far from zero", "a wide cloud",
                              "voxels past int64 keys"])
def test_voxel_averages_equal_a_plain_loop_over_cells_on_a_random_cloud(voxel, low, high, first_id):
    """Any coordinates (negative too) and ids, whichever way the cells are counted."""
    rng = np.random.default_rng(3)
    points = rng.uniform(low, high, (2000, 3)).astype(np.float32)
    ids = rng.integers(first_id, first_id + 8, 2000).astype(np.uint32)
    colours = rng.integers(0, 256, (2000, 3)).astype(np.uint8)
    cells: dict = {}
    for point, object_id, colour in zip(points, ids, colours):
        key = (int(object_id), *(int(c) for c in np.floor(point / voxel)))
        cells.setdefault(key, []).append((point.astype(np.float64), colour.astype(np.float64)))
    expected = [(key[0], np.mean([p for p, _ in group], axis=0), np.rint(np.mean([c for _, c in group], axis=0)))
                for key, group in sorted(cells.items())]
    out, out_ids, out_colours = voxel_downsample(points, ids, voxel, colours)
    assert out_ids.tolist() == [object_id for object_id, _, _ in expected], "voxel order: id, then x, y, z"
    np.testing.assert_allclose(out, np.array([p for _, p, _ in expected]), atol=1e-6)
    np.testing.assert_array_equal(out_colours, np.array([c for _, _, c in expected]))
