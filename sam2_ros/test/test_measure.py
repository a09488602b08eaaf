"""The benchmarks' measuring kit: frames and prompts where the suites say they are, and statistics worked by hand."""
import numpy as np
import pytest

from sam2_ros.tools import measure
from sam2_ros.tools.measure import (
    camera_frame,
    depth_scene,
    eight_boxes,
    median_ms,
    per_frame_ms,
    polygons_per_object,
    slope,
    spread_clicks,
)
from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject


def test_eight_boxes_tile_a_640x480_frame_in_two_rows_of_four():
    boxes = [p.box.tolist() for p in eight_boxes(640, 480)]
    assert boxes[0] == [0, 0, 160, 240] and boxes[3] == [480, 0, 640, 240]
    assert boxes[4] == [0, 240, 160, 480] and boxes[7] == [480, 240, 640, 480]
    assert [p.object_id for p in eight_boxes(640, 480)] == list(range(1, 9))


def test_the_depth_scene_puts_three_boxes_in_front_of_a_two_metre_wall():
    depth = depth_scene(480, 640)
    assert depth.dtype == np.uint16 and depth.shape == (480, 640)
    # eight_boxes' first three, 20 px in from each edge: 0.8, 1.0 and 1.2 m
    assert depth[20:220, 20:140].min() == depth[20:220, 20:140].max() == 800
    assert depth[20:220, 180:300].max() == 1000 and depth[20:220, 340:460].max() == 1200
    assert depth[19, 20] == depth[100, 500] == depth[400, 100] == 2000
    assert np.count_nonzero(depth != 2000) == 3 * 200 * 120


def test_spread_clicks_put_one_foreground_click_at_each_cells_centre():
    clicks = spread_clicks(5, 640, 480)
    assert [c.points.tolist() for c in clicks] == [[[80, 120]], [[240, 120]], [[400, 120]], [[560, 120]],
                                                    [[80, 360]]]
    assert all(c.point_labels.tolist() == [1] for c in clicks)


def test_slope_is_the_least_squares_growth_per_step():
    assert slope([3.0, 5.0, 7.0, 9.0]) == pytest.approx(2.0)
    assert slope([1.0, 2.0, 1.0, 2.0]) == pytest.approx(0.2)  # sum((x-1.5)(y-1.5)) / sum((x-1.5)^2) = 1 / 5
    assert slope([4.0]) == 0.0


def test_polygons_per_object_is_the_mean_count_of_contour_rings():
    objects = [SegmentedObject(contour_lengths=[4, 4, 5]), SegmentedObject(contour_lengths=[6])]
    result = SegmentationResult(objects=objects)  # 3 rings and 1: 2 per object
    assert polygons_per_object(result) == 2.0 and polygons_per_object(SegmentationResult()) == 0.0


def test_medians_skip_the_warm_up_and_prompts_go_in_after_frame_0(monkeypatch):
    """A stopwatch that moves only when an action says how long it took (ms)."""
    clock = {"s": 0.0}
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock["s"])

    def costing(costs, log):
        costs = iter(costs)

        def action(*args):
            log.append(("run", *args))
            clock["s"] += next(costs) / 1e3
        return action

    calls = []
    track = costing([50, 1, 2, 3, 4, 5], calls)  # frame 0 compiles; frame 1 is the other warm-up frame
    frame_ms = per_frame_ms(6, track, lambda: calls.append(("prompt",)), lambda: None, "test", warm_up=2)
    assert frame_ms == pytest.approx(3.5)  # the median of 2, 3, 4, 5
    assert calls[:3] == [("run", 0), ("prompt",), ("run", 1)] and len(calls) == 7
    runs = []
    assert median_ms(costing([100, 1, 3, 2], runs), 3, lambda: None) == pytest.approx(2.0), "one warm-up, then 3"
    assert len(runs) == 4


def test_a_camera_frame_is_the_photo_at_the_cameras_size():
    frame = camera_frame(720, 1280)
    assert frame.shape == (720, 1280, 3) and frame.dtype == np.uint8 and frame.std() > 20
