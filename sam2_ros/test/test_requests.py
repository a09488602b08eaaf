"""The services: every call answered once, with the truth, bad requests refused before they queue."""
import re
from dataclasses import replace

import pytest
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from conftest import photo, slow_frames
from rosharness import NODE, Running, add, box_prompt, header, wait_until
from sam2_ros.core.everything import EverythingSettings
from sam2_ros.ros.requests import MAX_POINTS_PER_SIDE, bounded
from sam2_ros_interfaces.srv import RemoveObject, Segment, SegmentEverything

OVER_BOUND = "points_per_side must be 1..64 (0: the node's everything_points_per_side), got 65"


def test_segment_everything_asks_at_most_64_points_a_side_and_valid_thresholds():
    bounded(EverythingSettings(points_per_side=MAX_POINTS_PER_SIDE))
    with pytest.raises(ValueError, match=re.escape(OVER_BOUND)):
        bounded(EverythingSettings(points_per_side=65))
    with pytest.raises(ValueError, match="pred_iou_thresh must be within 0..1, got 1.5"):
        bounded(replace(EverythingSettings(), pred_iou_thresh=1.5))


def test_a_negative_points_per_side_is_refused_with_the_services_bound_not_the_cores():
    """The request's -1 is not 0 (the node's default): the answer names 1..64, as SegmentEverything.srv does."""
    with pytest.raises(ValueError, match=r"points_per_side must be 1..64 \(0: the node's everything_points_per_side\), "
                                         "got -1"):
        bounded(EverythingSettings(points_per_side=-1))


def test_a_malformed_prompt_is_answered_with_the_reason_and_changes_nothing(running):
    running.peer.publish_rgb(photo("coffee"), header(500))
    running.peer.result_for(header(500))
    answer = add(running, box_prompt([10, 10, 50], header(500)))  # three numbers
    assert not answer.success and "box" in answer.message and list(answer.object_ids) == []
    assert running.node.session.object_labels() == {}


def test_removing_an_object_that_is_not_there_says_which_ones_are(running):
    running.peer.publish_rgb(photo("coffee"), header(510))
    running.peer.result_for(header(510))
    assert add(running, box_prompt([100, 50, 400, 300], header(510))).success
    answer = running.peer.call(RemoveObject, f"{NODE}/remove_object", RemoveObject.Request(object_id=7))
    assert not answer.success and "no object with id 7 (tracked ids: 1)" in answer.message
    done = running.peer.call(RemoveObject, f"{NODE}/remove_object", RemoveObject.Request(object_id=1))
    assert done.success and done.message == "removed object 1"
    wait_until(lambda: running.node.session.object_labels() == {}, 10, "the object gone")


def test_segment_everything_with_a_threshold_that_is_not_a_number_is_refused_not_given_the_default(running):
    """Below 0 asks for the node's threshold; NaN asks for nothing a pass can use, and says so."""
    request = SegmentEverything.Request(pred_iou_thresh=float("nan"), stability_score_thresh=-1.0)
    answer = running.peer.call(SegmentEverything, f"{NODE}/segment_everything", request)
    assert not answer.success and answer.message == "pred_iou_thresh must be within 0..1, got nan"


def test_segment_everything_over_its_bound_is_refused_before_the_worker_sees_it(running):
    request = SegmentEverything.Request(points_per_side=MAX_POINTS_PER_SIDE + 1)
    answer = running.peer.call(SegmentEverything, f"{NODE}/segment_everything", request)
    assert not answer.success and answer.message == OVER_BOUND
    assert running.node.counts().refused["bad request"] == 1


def test_a_burst_of_calls_while_the_worker_is_busy_is_answered_call_by_call(checkpoint, monkeypatch):
    """40 calls at once while every executor thread waits on the worker: none is dropped before the node sees it.

    ROS's default service QoS kept 10 waiting calls and dropped the older ones unanswered. The
    client keeps as many as it sends too (with the default it drops some of its own burst).
    """
    running = Running(checkpoint, request_timeout_s=0.5)
    try:
        running.peer.publish_rgb(photo("coffee"), header(1))
        running.peer.result_for(header(1))
        busy = slow_frames(monkeypatch, 3.0)
        running.peer.publish_rgb(photo("coffee"), header(2))
        wait_until(busy.is_set, 30, "a frame in flight")
        burst = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=40, reliability=ReliabilityPolicy.RELIABLE)
        client = running.peer.node.create_client(Segment, f"{NODE}/segment", qos_profile=burst)
        assert client.wait_for_service(timeout_sec=30)
        calls = [client.call_async(Segment.Request(prompts=[box_prompt([10, 10, 100, 100])])) for _ in range(40)]
        wait_until(lambda: all(call.done() for call in calls), 30, "an answer to each of 40 calls")
        messages = {call.result().message for call in calls}
        assert messages <= {"segmented 1 object(s)", "not applied: the node did not start this request within 0.5 s "
                            "(request_timeout_s); it was cancelled"}, messages
    finally:
        running.close()
