"""The sample bag: frames, camera infos, a prompt, depth and ground truth as the scene's geometry gives them."""
import numpy as np
import pytest

from bagkit import FRAMES, messages
from sam2_ros.tools.make_sample_bag import IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC, make_sample_bag


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_sample_bag_holds_frames_camera_info_a_prompt_and_ground_truth(tmp_path, storage):
    bag = make_sample_bag(tmp_path / "sample", frames=FRAMES, storage=storage)
    found = messages(bag)
    assert len(found[IMAGE_TOPIC]) == len(found[TRUTH_TOPIC]) == len(found["/camera/camera_info"]) == FRAMES
    (_, prompt), = found[PROMPT_TOPIC]
    assert prompt.object_id == 1 and prompt.label == "cat" and prompt.header == found[IMAGE_TOPIC][0][1].header
    truth = found[TRUTH_TOPIC][0][1]
    mask = truth.data.reshape(truth.height, truth.width)
    ys, xs = np.nonzero(mask)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == prompt.box.tolist()


def test_the_sample_bags_depth_and_true_centroid_follow_the_scenes_geometry(tmp_path):
    from sam2_ros.core.geometry import Intrinsics, depth_in_metres, object_3d
    from sam2_ros.tools.make_sample_bag import CENTROID_TOPIC, DEPTH_INFO_TOPIC, DEPTH_TOPIC
    found = messages(make_sample_bag(tmp_path / "sample", frames=FRAMES))
    assert len(found[DEPTH_TOPIC]) == len(found[DEPTH_INFO_TOPIC]) == len(found[CENTROID_TOPIC]) == FRAMES
    depth, truth, centroid = (found[topic][0][1] for topic in (DEPTH_TOPIC, TRUTH_TOPIC, CENTROID_TOPIC))
    assert depth.encoding == "16UC1" and depth.header == truth.header == centroid.header
    mm = depth.data.view("<u2").reshape(240, 320)
    object_mask = truth.data.reshape(240, 320) > 0
    assert set(mm[object_mask]) == {1000} and set(mm[~object_mask]) == {3000}  # 1 m in front of a 3 m wall
    # frame 0: the 80-px cat at columns 20..99, rows 60..139; focal 160 / tan 30 deg = 277.13 px
    focal = 160 / np.tan(np.radians(30))
    truth_xyz = [(59.5 - 160) / focal, (99.5 - 120) / focal, 1.0]
    np.testing.assert_allclose([centroid.point.x, centroid.point.y, centroid.point.z], truth_xyz, atol=1e-9)
    last = found[CENTROID_TOPIC][-1][1]
    assert last.point.z == pytest.approx(1.5)
    info = found[DEPTH_INFO_TOPIC][0][1]
    camera = Intrinsics.from_matrix(info.p, info.width, info.height)
    core = object_3d(object_mask, depth_in_metres(mm, "16UC1"), camera)
    assert np.abs(core.centroid - truth_xyz).max() < 1e-3, "noise-free depth: within 1 mm"


@pytest.mark.parametrize("args, reason", [
    (["--frames", "0"], "--frames must be at least 1, got 0"),
    (["--rate", "0"], "--rate must be positive, got 0.0"),
    (["--zoom", "-1"], "--zoom must be 0 or more, got -1.0"),
])
def test_the_sample_bag_tool_checks_its_arguments_before_touching_the_disk(tmp_path, capsys, args, reason):
    from sam2_ros.tools.make_sample_bag import main as make_main
    assert make_main([str(tmp_path / "bag"), *args]) == 2
    assert reason in capsys.readouterr().err and not (tmp_path / "bag").exists()

