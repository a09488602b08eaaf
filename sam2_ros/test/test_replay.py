"""sam2_replay: a bag into a real node and its answers into an output bag, frame by frame, in bag order."""
import re
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import Image

from bagkit import (
    FRAMES,
    bag_node,
    messages,
    peak_rss_mb,
    reset,
    start_node,
    stop_node,
    with_a_corrupt_message,
    with_stamps,
)
from sam2_ros.tools import replay as replay_module
from sam2_ros.tools.bags import BagError
from sam2_ros.tools.make_sample_bag import COMPRESSED_TOPIC, IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC, make_sample_bag
from sam2_ros.tools.render_bag import main as render
from sam2_ros.tools.replay import inspect, read, replay

node = bag_node  # the fixture's name in these tests


def test_replay_records_one_result_per_frame_with_matching_stamps_and_render_draws_them(tmp_path, node):
    bag = make_sample_bag(tmp_path / "sample", frames=FRAMES)
    summary = replay(bag, tmp_path / "out", progress=False)
    assert (summary.published, summary.processed, summary.skipped) == (FRAMES, FRAMES, 0)
    assert len(summary.iou) == FRAMES and all(0 <= iou <= 1 for iou in summary.iou)
    assert re.search(r"^frames processed +6$", summary.table(), re.M)

    inputs = [msg.header for _, msg in messages(bag)[IMAGE_TOPIC]]
    found = messages(tmp_path / "out")
    results = [msg for _, msg in found["/sam2_segmenter_node/result"]]
    assert [r.header for r in results] == inputs
    assert [m.header for _, m in found["/sam2_segmenter_node/mask"]] == inputs
    assert all([o.object_id for o in r.objects] == [1] for r in results), "the bag's prompt starts object 1"
    assert all(r.objects[0].label == "cat" for r in results)
    with_3d = [r for r in results if r.objects[0].has_3d]
    assert with_3d and all(r.depth_header == r.header for r in with_3d), "depth paired with every frame's stamp"
    assert summary.frames_3d_truth == FRAMES and len(summary.centroid_error_m) == len(with_3d)
    assert "3D centroid error (object 1)" in summary.table()

    sheet = tmp_path / "sheet.png"
    assert render([str(tmp_path / "out"), "--video", str(tmp_path / "v.mp4"), "--sheet", str(sheet)]) == 0
    image = cv2.imread(str(sheet))
    assert image.shape == (2 * (240 + 4), 4 * (320 + 4), 3)
    assert (tmp_path / "v.mp4").stat().st_size > 0


def test_replay_main_plays_a_sqlite3_bag_at_its_rate_and_exits_zero(tmp_path, node):
    bag = make_sample_bag(tmp_path / "sample", frames=FRAMES, storage="sqlite3")
    done = subprocess.run([sys.executable, "-m", "sam2_ros.tools.replay", str(bag), "--out", str(tmp_path / "out"),
                           "--storage", "sqlite3", "--rate", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^frames published +6$", done.stdout, re.M) and "output bag:" in done.stdout
    found = messages(tmp_path / "out")
    assert next((tmp_path / "out").glob("*.db3")).is_file()
    assert len(found[IMAGE_TOPIC]) == FRAMES and found["/sam2_segmenter_node/result"]


def test_a_bag_of_png_compressed_images_replays_to_the_same_masks_as_its_raw_twin(tmp_path, checkpoint):
    raw_bag = make_sample_bag(tmp_path / "raw", frames=3)
    png_bag = make_sample_bag(tmp_path / "png", frames=3, compressed=True)
    assert COMPRESSED_TOPIC in messages(png_bag) and IMAGE_TOPIC not in messages(png_bag)
    masks = {}
    rclpy.init()
    try:
        for name, bag, topic, compressed in (("raw", raw_bag, IMAGE_TOPIC, False),
                                             ("png", png_bag, COMPRESSED_TOPIC, True)):
            process = start_node(checkpoint, f"image:={IMAGE_TOPIC}", f"image/compressed:={COMPRESSED_TOPIC}",
                                 compressed=compressed)
            try:
                summary = replay(bag, tmp_path / f"out_{name}", image_topic=topic, progress=False)
            finally:
                stop_node(process)
            assert (summary.published, summary.processed) == (3, 3)
            found = messages(tmp_path / f"out_{name}")
            assert found[topic][0][1].__msgtype__.endswith(("/Image", "/CompressedImage"))
            masks[name] = [m.data.tobytes() for _, m in found["/sam2_segmenter_node/mask"]]
    finally:
        rclpy.shutdown()
    assert len(masks["png"]) == 3 and any(any(m) for m in masks["png"])
    assert masks["png"] == masks["raw"], "png is lossless: the node must see the same pixels"


def test_replay_iou_is_intersection_over_union_per_object_worked_by_hand():
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from sam2_ros.ros.conversions import array_to_image
    from sam2_ros.tools.replay import _iou
    ours, truth = np.zeros((2, 4), np.uint8), np.zeros((2, 4), np.uint8)
    ours[0, 0:3] = 1  # object 1: ours 3 pixels, truth 3 pixels, 2 shared: 2 / 4 = 0.5
    truth[0, 1:4] = 1
    ours[1, 0:2] = truth[1, 0:2] = 2  # object 2: identical: 1.0
    raw = [serialize_message(array_to_image(m, "mono8", Header())) for m in (ours, truth)]
    assert _iou(*raw) == pytest.approx((0.5 + 1.0) / 2)


def test_the_centroid_error_is_the_distance_to_the_truth_worked_by_hand():
    from geometry_msgs.msg import Point

    from sam2_ros.tools.replay import Summary, centroid_error
    from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject
    off = Point(x=0.3, y=0.4, z=1.0)
    ones = SegmentationResult(objects=[SegmentedObject(object_id=1, has_3d=True, centroid_3d=off)])
    flat = SegmentationResult(objects=[SegmentedObject(object_id=1, has_3d=False)])
    # (0.3, 0.4, 0) off = 0.5 m; no 3D, or no truth: nothing to score
    assert centroid_error(ones, np.array([0.0, 0.0, 1.0])) == pytest.approx(0.5)
    assert centroid_error(flat, np.zeros(3)) is None and centroid_error(ones, None) is None
    summary = Summary(centroid_error_m=[0.5], frames_3d_truth=3)
    assert "p50 0.5000 m, max 0.5000 m over 1 of 3 frames" in summary.table()


def test_bad_bags_get_clear_errors(tmp_path):
    bag = make_sample_bag(tmp_path / "sample", frames=2)
    with pytest.raises(BagError, match="topic '/camera/color/image_raw' is not in .* it has: /camera/aligned_"):
        inspect(bag, "/camera/color/image_raw", PROMPT_TOPIC, TRUTH_TOPIC)
    with pytest.raises(BagError, match="holds sensor_msgs/msg/CameraInfo, not an image"):
        inspect(bag, "/camera/camera_info", PROMPT_TOPIC, TRUTH_TOPIC)
    with pytest.raises(BagError, match="'/camera/camera_info' holds sensor_msgs/msg/CameraInfo, not sensor_msgs/"):
        inspect(bag, IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC, depth_topic="/camera/camera_info")
    with pytest.raises(BagError, match="no bag at"):
        inspect(tmp_path / "absent", IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC)
    for storage, suffix in (("mcap", "*.mcap"), ("sqlite3", "*.db3")):
        bag = make_sample_bag(tmp_path / f"truncated_{storage}", frames=2, storage=storage)
        data = next(bag.glob(suffix))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
        with pytest.raises(BagError, match="truncated or damaged|cannot be read"):
            list(read(inspect(bag, IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC)))


def test_replay_refuses_when_no_node_listens(tmp_path):
    bag = make_sample_bag(tmp_path / "sample", frames=2)
    rclpy.init()
    try:
        with pytest.raises(BagError, match=f"no sam2_segmenter_node subscribes to '{IMAGE_TOPIC}'"):
            replay(bag, tmp_path / "out", node_name="/nobody", progress=False, timeout=1)
    finally:
        rclpy.shutdown()


def test_replay_refuses_a_node_that_hears_the_camera_but_not_the_prompts(tmp_path):
    """A prompt published before anyone listens is lost for good: every later mask would differ."""
    from sensor_msgs.msg import Image
    bag = make_sample_bag(tmp_path / "sample", frames=2)
    rclpy.init()
    camera_only = rclpy.create_node("camera_only")
    try:
        camera_only.create_subscription(Image, IMAGE_TOPIC, lambda _: None, 10)
        with pytest.raises(BagError, match=f"subscribes to '{PROMPT_TOPIC}' after 1 s: start it with "
                                           f"-r prompt:={PROMPT_TOPIC}"):
            replay(bag, tmp_path / "out", prompt_topic=PROMPT_TOPIC, progress=False, timeout=1)
    finally:
        camera_only.destroy_node()
        rclpy.shutdown()


def test_the_replayer_joins_its_thread_so_the_process_never_aborts_at_exit():
    script = ("import rclpy\nfrom sam2_ros.tools.replay import Replayer\n"
              "rclpy.init()\nreplayer = Replayer('/nobody')\nreplayer.close()\nrclpy.shutdown()\n")
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(8)]
    outcomes = [(run.wait(timeout=120), run.stdout.read()) for run in runs]
    assert all(code == 0 and "terminate called" not in out for code, out in outcomes), outcomes


def test_a_corrupt_message_ends_replay_with_exit_2_naming_it_and_a_readable_bag_of_what_came_before(tmp_path, node):
    sample = make_sample_bag(tmp_path / "sample", frames=FRAMES)
    with_a_corrupt_message(sample, tmp_path / "corrupt", corrupt_frame=4)
    done = subprocess.run([sys.executable, "-m", "sam2_ros.tools.replay", str(tmp_path / "corrupt"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert re.search(rf"message \d+ of \d+ on '{IMAGE_TOPIC}' \(sensor_msgs/msg/Image\) is corrupt", done.stderr)
    assert "Traceback" not in done.stderr and "output bag (up to the corrupt message)" in done.stdout
    found = messages(tmp_path / "out")  # closed and readable
    assert len(found[IMAGE_TOPIC]) == 3 and len(found["/sam2_segmenter_node/result"]) == 3


def test_replay_memory_stays_flat_with_the_bags_length(tmp_path, node):
    """600 frames need no more memory than 60: each is published, recorded once answered, and forgotten."""
    peaks = {}
    for frames in (60, 600):
        bag = make_sample_bag(tmp_path / f"sample{frames}", frames=frames)
        peaks[frames] = peak_rss_mb(sys.executable, "-m", "sam2_ros.tools.replay", str(bag),
                                    "--out", str(tmp_path / f"out{frames}"), "--rate", "2")
        assert len(messages(tmp_path / f"out{frames}")[IMAGE_TOPIC]) == frames
    print(f"peak RSS, MiB: {peaks}")
    assert peaks[600] <= 1.2 * peaks[60], peaks


def test_frames_are_kept_apart_by_position_whatever_their_stamps(tmp_path, node):
    """Zero, looped and backward stamps: every frame published, answered and recorded with its answer, in bag order.

    The oracle: the same frames with good stamps, replayed into the same node (objects reset between).
    """
    sample = make_sample_bag(tmp_path / "sample", frames=20)
    labels = {}
    for scenario in ("good", "zero", "looped", "backward"):
        reset(node)
        out = tmp_path / f"out_{scenario}"
        summary = replay(with_stamps(sample, tmp_path / scenario, scenario), out, progress=False, timeout=60)
        assert (summary.published, summary.processed, summary.refused) == (20, 20, 0), scenario
        assert summary.restamped == {"good": 0, "zero": 20, "looped": 10, "backward": 10}[scenario]
        found = messages(out)
        frames = [msg for _, msg in found[IMAGE_TOPIC]]
        results = [msg for _, msg in found["/sam2_segmenter_node/result"]]
        masks = [msg for _, msg in found["/sam2_segmenter_node/mask"]]
        assert len(frames) == len(results) == len(masks) == 20, scenario
        stamps = [f.header.stamp.sec * 10**9 + f.header.stamp.nanosec for f in frames]
        assert all(b > a > 0 for a, b in zip(stamps, stamps[1:])), f"{scenario}: published stamps tell frames apart"
        assert [r.header for r in results] == [m.header for m in masks] == [f.header for f in frames], scenario
        labels[scenario] = [m.data.reshape(m.height, m.width).copy() for m in masks]
    for scenario in ("zero", "looped", "backward"):
        for t in range(20):
            assert np.array_equal(labels[scenario][t], labels["good"][t]), f"{scenario}: frame {t}'s own answer"


def test_a_frame_the_node_refuses_is_reported_within_a_second_and_passed(tmp_path, node, capfd):
    bag = with_stamps(make_sample_bag(tmp_path / "sample", frames=FRAMES), tmp_path / "odd", "good", refused_frame=3)
    summary = replay(bag, tmp_path / "out", progress=False, timeout=60)
    assert (summary.published, summary.processed, summary.refused) == (FRAMES, FRAMES - 1, 1)
    said = re.search(r"camera frame 4 \(stamp \d+ ns\): refused by the node: image dropped: unsupported image "
                     r"encoding 'yuv999'.*\(after ([\d.]+) s\); passed", capfd.readouterr().err)
    assert said and float(said.group(1)) <= 1.5, "the node's /diagnostics say it within a second"
    found = messages(tmp_path / "out")
    assert len(found[IMAGE_TOPIC]) == FRAMES and len(found["/sam2_segmenter_node/result"]) == FRAMES - 1
    assert render([str(tmp_path / "out"), "--video", str(tmp_path / "v.mp4"), "--sheet", str(tmp_path / "s.png")]) == 0
    rendered = capfd.readouterr()
    assert f"({FRAMES} frames)" in rendered.out
    assert "sam2_render: camera frame 4: unsupported image encoding 'yuv999'" in rendered.err
    assert "drawn as a black frame" in rendered.err


def test_sigterm_ends_replay_as_ctrl_c_does_with_a_readable_output_bag(tmp_path, node):
    bag = make_sample_bag(tmp_path / "sample", frames=60)
    process = subprocess.Popen([sys.executable, "-m", "sam2_ros.tools.replay", str(bag), "--out", str(tmp_path / "out"),
                                "--rate", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "out").glob("*.mcap")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # a few frames in
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        assert time.monotonic() - sent < 2.0, "SIGTERM is not held up"
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in stderr, stderr
    assert "Traceback" not in stderr and "output bag (up to the signal)" in stdout
    assert 0 < len(messages(tmp_path / "out")[IMAGE_TOPIC]) < 60



def test_sigterm_taken_inside_rclpys_deserialisation_still_ends_replay_as_sigterm(tmp_path, node, monkeypatch, capsys):
    """A signal's exception raised while deserialize_message builds a message comes out of pybind11 as a TypeError.

    Seen in CI: "message 130 of 361 ... is corrupt: TypeError: Unable to convert function return value"
    and exit code 2. Here the handler main() installed runs inside the 4th frame's real deserialisation,
    as a SIGTERM taken there does.
    """
    bag = make_sample_bag(tmp_path / "sample", frames=FRAMES)
    real_init, real_deserialize, inside, frames = Image.__init__, replay_module.deserialize_message, [], []

    def deserialize(raw, kind):
        inside.append(kind)
        try:
            return real_deserialize(raw, kind)
        finally:
            inside.pop()

    def init(self, **fields):
        if inside == [Image] and threading.current_thread() is threading.main_thread():
            frames.append(self)
            if len(frames) == 4:
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        real_init(self, **fields)
    monkeypatch.setattr(replay_module, "deserialize_message", deserialize)
    monkeypatch.setattr(Image, "__init__", init)
    rclpy.shutdown()  # main() owns the ROS context, as in a process of its own
    try:
        code = replay_module.main([str(bag), "--out", str(tmp_path / "out")])
    finally:
        rclpy.init()  # the fixture's again
    assert code == 128 + signal.SIGTERM
    out, err = capsys.readouterr()
    assert "stopped by SIGTERM" in err and "corrupt" not in err and "output bag (up to the signal)" in out
    assert not replay_module._received, "main() leaves no signal behind for the next run in this process"
