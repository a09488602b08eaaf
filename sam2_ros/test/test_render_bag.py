"""sam2_render: every frame drawn in bag order with its own answer, flat memory, nothing written over."""
import sys

import cv2
import numpy as np
import pytest

from bagkit import peak_rss_mb, write_output_bag
from sam2_ros.tools.bags import typestore
from sam2_ros.tools.make_sample_bag import IMAGE_TOPIC, make_sample_bag
from sam2_ros.tools.render_bag import main as render


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


def test_render_refuses_a_zero_frame_rate_before_writing(tmp_path, capsys):
    write_output_bag(tmp_path / "out", [(32, 24)] * 2)
    assert render([str(tmp_path / "out"), "--video", str(tmp_path / "v.mp4"), "--fps", "0"]) == 2
    assert "--fps must be positive, got 0.0" in capsys.readouterr().err and not (tmp_path / "v.mp4").exists()


def test_render_memory_stays_flat_with_the_bags_length(tmp_path):
    """600 frames need no more memory than 60: each is drawn, written and forgotten."""
    peaks = {}
    for frames in (60, 600):
        write_output_bag(tmp_path / f"out{frames}", [(320, 240)] * frames)
        peaks[frames] = peak_rss_mb(sys.executable, "-m", "sam2_ros.tools.render_bag", str(tmp_path / f"out{frames}"))
    print(f"peak RSS, MiB: {peaks}")
    assert peaks[600] <= 1.2 * peaks[60], peaks


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



def test_the_contact_sheet_shows_twelve_evenly_spaced_frames_first_and_last_included_row_by_row():
    """100 frames: 0, 9, 18, ..., 99 (99 / 11 = 9 apart), four to a row; each tile is its frame (grey = index)."""
    from sam2_ros.tools.render_bag import ContactSheet
    sheet = ContactSheet(100)
    for index in range(100):
        sheet.offer(index, np.full((24, 32, 3), index, np.uint8))
    picture = sheet.image()
    assert picture.shape == (3 * (24 + 4), 4 * (32 + 4), 3)
    for n, index in enumerate(range(0, 100, 9)):
        y, x = (n // 4) * (24 + 4), (n % 4) * (32 + 4)
        assert (picture[y:y + 4, x:x + 32] == index).all(), f"tile {n} is frame {index}"  # above its caption
        assert (picture[y + 24:y + 28, x:x + 36] == 255).all(), "a white gap below each tile"


def test_a_clip_shorter_than_the_sheet_shows_every_frame():
    from sam2_ros.tools.render_bag import ContactSheet
    sheet = ContactSheet(5)
    for index in range(5):
        sheet.offer(index, np.full((24, 32, 3), 40 * index, np.uint8))
    picture = sheet.image()
    assert picture.shape == (2 * 28, 4 * 36, 3)
    assert picture[0, 3 * 36, 0] == 120 and picture[28, 0, 0] == 160, "frame 3 ends row one, frame 4 starts row two"
    assert (picture[28:52, 36:] == 255).all(), "the rest of the last row is blank"
