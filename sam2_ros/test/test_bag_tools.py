"""Sample bag -> a real node -> output bag -> contact sheet, and clear errors for bad bags."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from ament_index_python.packages import get_package_prefix
from rosbags.rosbag2 import Reader

from sam2_ros.tools.bags import BagError, typestore
from sam2_ros.tools.make_sample_bag import COMPRESSED_TOPIC, IMAGE_TOPIC, PROMPT_TOPIC, TRUTH_TOPIC, make_sample_bag
from sam2_ros.tools.render_bag import main as render
from sam2_ros.tools.replay import inspect, read, replay
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


def start_node(checkpoint, *remaps: str, compressed: bool = False, depth: bool = False) -> subprocess.Popen:
    """sam2_segmenter_node started as the demo starts it, remapped onto the bag's topics."""
    exe = Path(get_package_prefix("sam2_ros")) / "lib" / "sam2_ros" / "sam2_segmenter_node"
    process = subprocess.Popen(
        [str(exe), "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "image_size:=256",
         "-p", "image_qos:=reliable", "-p", f"compressed:={str(compressed).lower()}",
         "-p", f"depth:={str(depth).lower()}",
         "-r", f"prompt:={PROMPT_TOPIC}", *(arg for remap in remaps for arg in ("-r", remap))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for_line(process, "active")
    return process


def stop_node(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


@pytest.fixture
def node(checkpoint):
    from sam2_ros.tools.make_sample_bag import DEPTH_INFO_TOPIC, DEPTH_TOPIC, INFO_TOPIC
    process = start_node(checkpoint, f"image:={IMAGE_TOPIC}", f"depth:={DEPTH_TOPIC}",
                         f"depth/camera_info:={DEPTH_INFO_TOPIC}", f"camera_info:={INFO_TOPIC}", depth=True)
    rclpy.init()
    yield process
    rclpy.shutdown()
    stop_node(process)


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


def write_output_bag(path: Path, sizes: list[tuple[int, int]]) -> None:
    """An output bag as sam2_replay writes it: frames (of the given sizes) and label images."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from sam2_ros.ros.conversions import array_to_image
    from sam2_ros.tools.bags import writer

    store = typestore()
    with writer(path) as bag:
        frames = bag.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        masks = bag.add_connection("/sam2_segmenter_node/mask", "sensor_msgs/msg/Image", typestore=store)
        for t, (width, height) in enumerate(sizes):
            header = Header(frame_id="camera")
            header.stamp.sec = t + 1
            labels = np.zeros((height, width), np.uint8)
            labels[: height // 2, : width // 2] = 1  # object 1: the top-left quarter
            grey = np.full((height, width, 3), 128, np.uint8)
            bag.write(frames, t + 1, serialize_message(array_to_image(grey, "rgb8", header)))
            bag.write(masks, t + 1, serialize_message(array_to_image(labels, "mono8", header)))


def test_render_draws_every_frame_when_the_resolution_changes_within_the_bag(tmp_path):
    write_output_bag(tmp_path / "out", [(64, 48)] * 3 + [(128, 72)] * 3)
    video, sheet = tmp_path / "v.mp4", tmp_path / "s.png"
    assert render([str(tmp_path / "out"), "--video", str(video), "--sheet", str(sheet), "--fps", "5"]) == 0
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    picture = cv2.imread(str(sheet))[..., ::-1]
    inside, outside = picture[10, 10].astype(int), picture[40, 60].astype(int)  # first tile, in / out of the mask
    assert (outside == 128).all() and abs(inside - 128).sum() > 30, (inside, outside)


def test_render_and_replay_refuse_to_overwrite_unless_forced(tmp_path, capsys):
    from sam2_ros.tools.replay import main as replay_main
    write_output_bag(tmp_path / "out", [(32, 24)] * 2)
    video, sheet = tmp_path / "v.mp4", tmp_path / "s.png"
    video.write_bytes(b"keep me")
    args = [str(tmp_path / "out"), "--video", str(video), "--sheet", str(sheet)]
    assert render(args) == 2 and "v.mp4' already exists" in capsys.readouterr().err
    assert video.read_bytes() == b"keep me" and not sheet.exists()
    assert render([*args, "--force"]) == 0 and video.stat().st_size > 7
    bag = make_sample_bag(tmp_path / "sample", frames=2)
    taken = tmp_path / "taken"
    taken.mkdir()
    # checked before any message is published: no node is running here, and none is waited for
    assert replay_main([str(bag), "--out", str(taken)]) == 2
    assert "taken' already exists" in capsys.readouterr().err
    assert replay_main([str(bag), "--out", str(tmp_path / "new"), "--rate", "0"]) == 2
    assert "--rate must be positive" in capsys.readouterr().err


def test_the_replayer_joins_its_thread_so_the_process_never_aborts_at_exit():
    script = ("import rclpy\nfrom sam2_ros.tools.replay import Replayer\n"
              "rclpy.init()\nreplayer = Replayer('/nobody')\nreplayer.close()\nrclpy.shutdown()\n")
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(8)]
    outcomes = [(run.wait(timeout=120), run.stdout.read()) for run in runs]
    assert all(code == 0 and "terminate called" not in out for code, out in outcomes), outcomes


def with_a_corrupt_message(bag: Path, out: Path, corrupt_frame: int) -> None:
    """Copy a bag, the camera frame `corrupt_frame` replaced by bytes that are no Image."""
    from sam2_ros.tools.bags import writer
    frames = 0
    with Reader(bag) as reader, writer(out) as copy:
        connections = {c.id: copy.add_connection(c.topic, c.msgtype, typestore=typestore()) for c in reader.connections}
        for connection, stamp, raw in reader.messages():
            if connection.topic == IMAGE_TOPIC:
                frames += 1
                if frames == corrupt_frame:
                    raw = b"\x00\x01\x00\x00 not an image"
            copy.write(connections[connection.id], stamp, raw)


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


@pytest.mark.parametrize("args, reason", [
    (["--frames", "0"], "--frames must be at least 1, got 0"),
    (["--rate", "0"], "--rate must be positive, got 0.0"),
    (["--zoom", "-1"], "--zoom must be 0 or more, got -1.0"),
])
def test_the_sample_bag_tool_checks_its_arguments_before_touching_the_disk(tmp_path, capsys, args, reason):
    from sam2_ros.tools.make_sample_bag import main as make_main
    assert make_main([str(tmp_path / "bag"), *args]) == 2
    assert reason in capsys.readouterr().err and not (tmp_path / "bag").exists()


def test_render_refuses_a_zero_frame_rate_before_writing(tmp_path, capsys):
    write_output_bag(tmp_path / "out", [(32, 24)] * 2)
    assert render([str(tmp_path / "out"), "--video", str(tmp_path / "v.mp4"), "--fps", "0"]) == 2
    assert "--fps must be positive, got 0.0" in capsys.readouterr().err and not (tmp_path / "v.mp4").exists()


def peak_rss_mb(*command: str) -> float:
    """Peak resident memory of a command run in a child process, MiB (the kernel's own count)."""
    script = ("import resource, subprocess, sys\n"
              "code = subprocess.run(sys.argv[1:]).returncode\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)\n")
    done = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, timeout=600)
    peak, code = done.stdout.split()[-2:]
    assert code == "0", done.stderr
    return float(peak)


def test_render_memory_stays_flat_with_the_bags_length(tmp_path):
    """600 frames need no more memory than 60: each is drawn, written and forgotten."""
    peaks = {}
    for frames in (60, 600):
        write_output_bag(tmp_path / f"out{frames}", [(320, 240)] * frames)
        peaks[frames] = peak_rss_mb(sys.executable, "-m", "sam2_ros.tools.render_bag", str(tmp_path / f"out{frames}"))
    print(f"peak RSS, MiB: {peaks}")
    assert peaks[600] <= 1.2 * peaks[60], peaks


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


def with_stamps(bag: Path, out: Path, scenario: str, refused_frame: int | None = None) -> Path:
    """Copy a sample bag, every header stamp rewritten as a camera driver or a recording might have it.

    good: as made; zero: a driver that does not stamp; looped: the first 10 frames' stamps played
    twice; backward: from frame 10 on, the clock 10 s back (a simulator reset). Messages keep
    their order and log times. `refused_frame` (0-based) gets an encoding the node does not read.
    """
    from sam2_ros.tools.bags import writer
    store = typestore()
    frame_stamps: list[int] = []
    with Reader(bag) as reader:  # the camera frames' stamps, in bag order
        for connection, _, raw in reader.messages():
            if connection.topic == IMAGE_TOPIC:
                header = store.deserialize_cdr(raw, connection.msgtype).header
                frame_stamps.append(header.stamp.sec * 10**9 + header.stamp.nanosec)
    new = {"good": lambda t, ns: ns, "zero": lambda t, ns: 0,
           "looped": lambda t, ns: frame_stamps[t % 10], "backward": lambda t, ns: ns - 10**10 if t >= 10 else ns}
    moved = {ns: new[scenario](t, ns) for t, ns in enumerate(frame_stamps)}
    frames = 0
    with Reader(bag) as reader, writer(out) as copy:
        connections = {c.id: copy.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for connection, log_ns, raw in reader.messages():
            msg = store.deserialize_cdr(raw, connection.msgtype)
            ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(moved.get(ns, ns), 10**9)
            if connection.topic == IMAGE_TOPIC:
                if frames == refused_frame:
                    msg.encoding = "yuv999"
                frames += 1
            copy.write(connections[connection.id], log_ns, store.serialize_cdr(msg, connection.msgtype))
    return out


def reset(node_process) -> None:
    """Forget the node's objects between replays (~/reset), as a user would."""
    from std_srvs.srv import Trigger
    peer = rclpy.create_node("bag_test_peer")
    try:
        client = peer.create_client(Trigger, "/sam2_segmenter_node/reset")
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(peer, future, timeout_sec=30)
        assert future.result().success
    finally:
        peer.destroy_node()


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


@pytest.mark.parametrize("stamps", [[0] * 8, [1, 2, 3, 4, 1, 2, 3, 4], [5, 6, 7, 8, 1, 2, 3, 4]],
                         ids=["zero", "looped", "backward"])
def test_render_draws_every_frame_in_bag_order_with_the_answer_that_follows_it(tmp_path, stamps):
    """Frame t is grey level 10 + 20 * t with its object at column 4 * t: each drawn frame is frame t, with its mask."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from sam2_ros.ros.conversions import array_to_image
    from sam2_ros.tools.bags import writer
    from sam2_ros.tools.render_bag import drawn_frames
    store = typestore()
    with writer(tmp_path / "out") as bag:
        frames = bag.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        masks = bag.add_connection("/sam2_segmenter_node/mask", "sensor_msgs/msg/Image", typestore=store)
        for t, seconds in enumerate(stamps):
            header = Header(frame_id="camera")
            header.stamp.sec = seconds
            grey = np.full((48, 64, 3), 10 + 20 * t, np.uint8)
            labels = np.zeros((48, 64), np.uint8)
            labels[30:40, 4 * t:4 * t + 8] = 1
            log_ns = 10**9 * (t + 1)  # the bag's order: each frame, then its answer
            bag.write(frames, log_ns, serialize_message(array_to_image(grey, "rgb8", header)))
            bag.write(masks, log_ns + 1, serialize_message(array_to_image(labels, "mono8", header)))
    drawn = list(drawn_frames(tmp_path / "out", IMAGE_TOPIC, "/sam2_segmenter_node"))
    assert len(drawn) == len(stamps)
    for t, frame in enumerate(drawn):
        assert (frame[:8] == 10 + 20 * t).all(), f"drawn frame {t} is frame {t}: its grey, above the label"
        inside = frame[33:37, 4 * t + 2:4 * t + 6].astype(int)
        assert np.abs(inside - (10 + 20 * t)).sum() > 0, f"frame {t} drawn with its own mask"


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
