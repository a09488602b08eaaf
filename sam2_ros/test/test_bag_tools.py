"""Sample bag -> a real node -> output bag -> contact sheet, and clear errors for bad bags."""
import os
import signal
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from ament_index_python.packages import get_package_prefix
from rosbags.rosbag2 import Reader

from sam2_ros.tools.bags import BagError, typestore
from sam2_ros.tools.make_sample_bag import IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC, make_sample_bag
from sam2_ros.tools.render_bag import main as render
from sam2_ros.tools.replay import read_plan, replay
from test_entry_point import wait_for_line

FRAMES = 6


def messages(bag: Path) -> dict[str, list]:
    """Every message of a bag, deserialised with rosbags: topic -> [(log time, message)]."""
    store, found = typestore(), {}
    with Reader(bag) as reader:
        for connection, stamp, raw in reader.messages():
            found.setdefault(connection.topic, []).append((stamp, store.deserialize_cdr(raw, connection.msgtype)))
    return found


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


@pytest.fixture
def node(checkpoint):
    """sam2_segmenter_node started as the demo starts it, remapped onto the bag's topics."""
    exe = Path(get_package_prefix("sam2_ros")) / "lib" / "sam2_ros" / "sam2_segmenter_node"
    process = subprocess.Popen(
        [str(exe), "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "image_size:=256",
         "-p", "image_qos:=reliable", "-r", f"image:={IMAGE_TOPIC}", "-r", f"prompt:={PROMPT_TOPIC}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for_line(process, "active")
    rclpy.init()
    yield process
    rclpy.shutdown()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


def test_replay_records_one_result_per_frame_with_matching_stamps_and_render_draws_them(tmp_path, node):
    bag = make_sample_bag(tmp_path / "sample", frames=FRAMES)
    summary = replay(bag, tmp_path / "out", progress=False)
    assert (summary.published, summary.processed, summary.skipped) == (FRAMES, FRAMES, 0)
    assert len(summary.iou) == FRAMES and all(0 <= iou <= 1 for iou in summary.iou)
    assert "frames processed          6" in summary.table()

    inputs = [msg.header for _, msg in messages(bag)[IMAGE_TOPIC]]
    found = messages(tmp_path / "out")
    results = [msg for _, msg in found["/sam2_segmenter_node/result"]]
    assert [r.header for r in results] == inputs
    assert [m.header for _, m in found["/sam2_segmenter_node/mask"]] == inputs
    assert all([o.object_id for o in r.objects] == [1] for r in results), "the bag's prompt starts object 1"
    assert all(r.objects[0].label == "cat" for r in results)

    sheet = tmp_path / "sheet.png"
    assert render([str(tmp_path / "out"), "--video", str(tmp_path / "v.mp4"), "--sheet", str(sheet)]) == 0
    image = cv2.imread(str(sheet))
    assert image.shape == (2 * (240 + 4), 4 * (320 + 4), 3)
    assert (tmp_path / "v.mp4").stat().st_size > 0


def test_bad_bags_get_clear_errors(tmp_path):
    bag = make_sample_bag(tmp_path / "sample", frames=2)
    with pytest.raises(BagError, match="topic '/camera/color/image_raw' is not in .* it has: /camera/camera_info"):
        read_plan(bag, "/camera/color/image_raw", PROMPT_TOPIC, TRUTH_TOPIC)
    with pytest.raises(BagError, match="holds sensor_msgs/msg/CameraInfo, not an image"):
        read_plan(bag, "/camera/camera_info", PROMPT_TOPIC, TRUTH_TOPIC)
    with pytest.raises(BagError, match="no bag at"):
        read_plan(tmp_path / "absent", IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC)
    data = next(bag.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    with pytest.raises(BagError, match="cannot read bag .*truncated or damaged"):
        read_plan(bag, IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC)


def test_replay_refuses_when_no_node_listens(tmp_path):
    bag = make_sample_bag(tmp_path / "sample", frames=2)
    rclpy.init()
    try:
        with pytest.raises(BagError, match=f"no sam2_segmenter_node subscribes to '{IMAGE_TOPIC}'"):
            replay(bag, tmp_path / "out", node_name="/nobody", progress=False, timeout=1)
    finally:
        rclpy.shutdown()
