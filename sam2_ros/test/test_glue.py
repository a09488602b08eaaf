"""The glue benchmark: real objects' outlines, each in its cell, through the node's own outputs to real subscribers."""
import numpy as np
import pytest
import rclpy

from conftest import bench_suite
from sam2_ros.core.contours import find_contours
from sam2_ros.tools import glue
from sam2_ros.tools.glue import GlueRig, GlueScene, at_camera_rate, real_masks


def test_eight_real_outlines_sit_each_in_its_own_cell_as_a_few_polygons():
    masks = real_masks(640, 480, 8)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        column, row = k % 4, k // 4
        assert 160 * column <= xs.min() and xs.max() < 160 * (column + 1), k
        assert 240 * row <= ys.min() and ys.max() < 240 * (row + 1), k
        assert 0.05 * 160 * 240 < mask.sum() < 0.5 * 160 * 240, "an object 70 % of its cell across"
        assert len(find_contours(mask)) <= 6, "a real object's outline, not random weights' fragments"
    assert not np.array_equal(masks[0][:240, :160], masks[1][:240, 160:320]), "the horse, then coins"


def test_frames_come_a_camera_period_apart_and_one_that_overran_is_not_made_up_by_a_burst(monkeypatch):
    """On a clock of its own (sleeping moves it on), so the times are exact: no scheduler in them."""
    clock = [100.0]
    monkeypatch.setattr(glue.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(glue.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    starts = []

    def step():
        starts.append(clock[0] - 100.0)
        if len(starts) == 2:
            clock[0] += 0.12  # this frame's glue outlasts two periods of 0.05 s
        return len(starts)

    assert at_camera_rate(step, 5, period_s=0.05) == [1, 2, 3, 4, 5]
    # 0, one period, right when the long frame ended (0.05 + 0.12), then a period apart again
    assert starts == pytest.approx([0.0, 0.05, 0.17, 0.22, 0.27])


@pytest.fixture
def rig():
    rclpy.init()
    glue = GlueRig()
    yield glue
    glue.close()
    rclpy.shutdown()


def test_one_frame_reaches_every_subscriber_with_each_objects_3d_at_its_own_depth(rig):
    """Object k stands 1 m + 10 cm * k in front of a 3 m wall: its centroid's z says which it is."""
    ms, result = rig.frame(GlueScene.of(640, 480, 3))
    assert ms > 0 and [o.object_id for o in result.objects] == [1, 2, 3]
    for k, obj in enumerate(result.objects):
        assert obj.has_3d and obj.centroid_3d.z == pytest.approx(1.0 + 0.1 * k, abs=1e-6)
    received = rig.received()
    assert min(received.values()) >= 1, received


def test_sam2_bench_reports_each_size_and_object_count(tmp_path, checkpoint):
    keys = {f"glue_{what}_{count}obj_{size}" for what in ("ms_p50", "objects_with_3d", "polygons_per_object",
                                                         "cpu_ms_per_frame", "listener_cpu_ms_per_frame")
            for count in (1, 3, 8) for size in ("640x480", "1280x720", "1920x1080")}
    results = bench_suite(tmp_path, "glue", checkpoint, "--glue-frames", "2", keys=keys)
    for size in ("640x480", "1280x720", "1920x1080"):
        for count in (1, 3, 8):
            assert results[f"glue_ms_p50_{count}obj_{size}"] > 0
            assert results[f"glue_objects_with_3d_{count}obj_{size}"] == count
    # the node builds and sends every frame, the listener takes each in: both spend CPU on them
    # (counted in the kernel's ticks, so two frames of one size may read 0: summed over all)
    for side in ("cpu", "listener_cpu"):
        spent = [results[key] for key in keys if key.startswith(f"glue_{side}_ms_per_frame_")]
        assert min(spent) >= 0 and sum(spent) > 0, side
