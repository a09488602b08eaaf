"""The stream suite's camera schedule and its figures, worked by hand on a few frames."""
import os

import pytest
import rclpy

from rosharness import header, wait_until
from sam2_ros.core import settings as S
from sam2_ros.ros.outputs import Outputs
from sam2_ros.tools.glue import listener
from sam2_ros.tools.stream import StreamRun, interval_figures, measure, profiles_variable, schedule
from sam2_ros_interfaces.msg import SegmentationResult, SegmentedObject


def test_a_15_hz_colour_camera_beside_30_hz_depth_sends_every_other_depth_stamp_in_colour():
    events = schedule(StreamRun(15.0, "reliable", seconds=0.1), start_ns=10**9)
    assert events == [(0.0, "colour", 10**9), (0.0, "depth", 10**9), (pytest.approx(1 / 30), "depth", 1_033_333_333),
                      (pytest.approx(2 / 30), "colour", 1_066_666_667), (pytest.approx(2 / 30), "depth", 1_066_666_667)]


def test_lagging_depth_keeps_its_stamps_and_is_sent_late():
    events = schedule(StreamRun(30.0, "reliable", lag_s=0.5, seconds=0.1), start_ns=0)
    colour = [(at, stamp) for at, kind, stamp in events if kind == "colour"]
    depth = [(at, stamp) for at, kind, stamp in events if kind == "depth"]
    assert [stamp for _, stamp in colour] == [stamp for _, stamp in depth] == [0, 33_333_333, 66_666_667]
    assert [at for at, _ in depth] == pytest.approx([0.5, 0.5 + 1 / 30, 0.5 + 2 / 30])
    assert [kind for _, kind, _ in events] == ["colour"] * 3 + ["depth"] * 3


def result(seconds: int, depth_seconds: int, *objects: SegmentedObject, postprocess_ms: float = 1.0):
    msg = SegmentationResult(header=header(seconds), objects=list(objects), postprocess_ms=postprocess_ms)
    msg.depth_header = header(depth_seconds) if depth_seconds else header(0, frame_id="")
    return msg


def test_the_figures_count_answers_to_frames_sent_and_3d_paired_by_stamp():
    seen = SegmentedObject(object_id=1, visible=True, has_3d=True)
    flat = SegmentedObject(object_id=1, visible=True, has_3d=False)
    hidden = SegmentedObject(object_id=2, visible=False)
    answers = [(1.1, result(1, 1, seen, hidden, postprocess_ms=2.0)),  # paired with its own depth, 100 ms old
               (2.3, result(2, 0, flat, postprocess_ms=4.0)),  # depth was sent but not paired, 300 ms old
               (3.2, result(3, 0, flat, postprocess_ms=6.0)),  # no depth sent for it, 200 ms old
               (9.9, result(9, 9, seen))]  # a frame this run never sent: not counted
    figures = measure(answers, colour_sent={10**9, 2 * 10**9, 3 * 10**9, 4 * 10**9}, depth_sent={10**9, 2 * 10**9},
                      run=StreamRun(30.0, "reliable"))
    assert figures["colour_frames_sent"] == 4 and figures["results"] == 3
    assert figures["results_with_depth_published"] == 2 and figures["3d_fraction"] == 0.5
    assert figures["visible_objects_with_3d_fraction"] == pytest.approx(1 / 3)
    assert figures["result_age_ms_p50"] == pytest.approx(200.0) and figures["postprocess_ms_p50"] == 4.0


def test_the_stream_suite_gives_its_nodes_the_profile_under_one_name_the_distros_fast_dds_reads():
    """Fast DDS 2 (Humble, Jazzy) reads FASTRTPS_..., Fast DDS 3 (Kilted on) FASTDDS_...; both set loads it twice."""
    assert profiles_variable("humble") == profiles_variable("jazzy") == "FASTRTPS_DEFAULT_PROFILES_FILE"
    assert profiles_variable("kilted") == profiles_variable("rolling") == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert profiles_variable("") == "FASTDDS_DEFAULT_PROFILES_FILE"  # these Kilted wheels set no ROS_DISTRO


def test_the_text_run_compares_result_intervals_before_the_prompt_with_those_after_its_first_pass():
    received = [10.0, 10.1, 10.2, 10.4,  # before the text prompt at 10.45: intervals 100, 100, 200 ms
                10.5, 11.0, 12.0,  # the detector loading and its first pass: in neither
                12.5, 12.8, 13.2, 13.5]  # after the first pass ended at 12.4: 300, 400, 300 ms
    figures = interval_figures(received, sent_at=10.45, from_at=12.4, to_at=float("inf"), what="text")
    assert figures["result_interval_ms_p50_before_text"] == pytest.approx(100.0)
    assert figures["result_interval_ms_p50_while_text"] == pytest.approx(300.0)
    assert figures["result_interval_ms_max_while_text"] == pytest.approx(400.0)


def test_a_text_run_whose_first_pass_never_ended_says_so_with_nan():
    figures = interval_figures([1.0, 1.2, 1.4], sent_at=1.3, from_at=None, to_at=float("inf"), what="text")
    assert figures["result_interval_ms_p50_before_text"] == pytest.approx(200.0)
    assert figures["result_interval_ms_p50_while_text"] != figures["result_interval_ms_p50_while_text"]  # NaN


def test_the_segment_everything_run_compares_intervals_before_the_call_with_those_until_its_answer():
    received = [10.0, 10.2, 10.4,  # before the call at 10.5: 200, 200 ms
                10.6, 11.2, 11.5,  # until the answer at 11.55: 600, 300 ms
                11.7, 11.9]  # after it: in neither
    figures = interval_figures(received, sent_at=10.5, from_at=10.5, to_at=11.55, what="everything")
    assert figures["result_interval_ms_p50_before_everything"] == pytest.approx(200.0)
    assert figures["result_interval_ms_p50_while_everything"] == pytest.approx(450.0)
    assert figures["result_interval_ms_max_while_everything"] == pytest.approx(600.0)


def test_the_hung_viewer_subscribes_to_every_output_of_the_node_as_rviz_would():
    """Else the hung-viewer run would stop a process that the node never sends anything to.

    The node has a name of its own: other tests' nodes in this ROS domain are sam2_segmenter_node.
    """
    name = f"sam2_viewer_test_{os.getpid()}"
    rclpy.init()
    node = rclpy.create_node(name)
    outputs = Outputs(node, S.NodeConfig().changed(depth=True))
    viewer = listener(f"/{name}")
    try:
        published = [p for p in node.publishers if p.topic_name.startswith(f"/{name}/")
                     and not p.msg_type.__module__.startswith("vision_msgs")]  # RViz shows no vision_msgs
        assert {f"/{name}/result", f"/{name}/overlay", f"/{name}/points"} <= {p.topic_name for p in published}
        wait_until(lambda: all(p.get_subscription_count() for p in published), 60, "the viewer on every output")
    finally:
        viewer.kill()
        viewer.wait()
        outputs.close()
        node.destroy_node()
        rclpy.shutdown()
