"""The node stays live: long work yields, nobody waits on SAM 2 but the worker, one frame has one setting."""
import threading
import time

from geometry_msgs.msg import PointStamped
from rclpy.parameter import Parameter

from conftest import photo
from rosharness import NODE, Running, add, box_prompt, header, wait_until
from sam2_ros.core.encoding import EncodedFrame
from sam2_ros.core.everything import EverythingPass
from sam2_ros.core.frames import RecentFrame
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros_interfaces.srv import SegmentEverything


def slow_everything(monkeypatch, seconds: float) -> threading.Event:
    """Each SAM 2 decoder call of segment everything takes `seconds` longer; the event says one ran."""
    started, real = threading.Event(), EverythingPass._decode

    def decode(*args, **kwargs):
        started.set()
        time.sleep(seconds)
        return real(*args, **kwargs)
    monkeypatch.setattr(EverythingPass, "_decode", decode)
    return started


def everything_async(running, **fields):
    client = running.peer.node.create_client(SegmentEverything, f"{NODE}/segment_everything")
    assert client.wait_for_service(timeout_sec=30)
    return client.call_async(SegmentEverything.Request(**fields))


def test_segment_everything_runs_between_camera_frames_and_deactivate_ends_it_within_a_second(
        checkpoint, monkeypatch):
    running = Running(checkpoint)
    try:
        image = photo("astronaut")
        running.peer.publish_rgb(image, header(1))
        running.peer.result_for(header(1))
        started = slow_everything(monkeypatch, 0.1)  # 32 x 32 points, 32 a call: 32 calls, over 3 s
        answer = everything_async(running, points_per_side=32)
        wait_until(started.is_set, 30, "the pass to start")
        for second in (2, 3):  # the camera keeps its turn while the pass runs
            running.peer.publish_rgb(image, header(second))
            running.peer.result_for(header(second), timeout=10)
        assert not answer.done(), "the pass should still be running"
        start = time.monotonic()
        running.node.trigger_deactivate()
        took = time.monotonic() - start
        wait_until(answer.done, 10, "the answer")
        assert took < 1.0, f"deactivate took {took:.2f} s with a pass in flight"
        assert not answer.result().success and "node" in answer.result().message
    finally:
        running.close()


def test_segment_everything_running_past_request_timeout_is_abandoned_and_answered(checkpoint, monkeypatch):
    running = Running(checkpoint, request_timeout_s=1.0)
    try:
        running.peer.publish_rgb(photo("astronaut"), header(1))
        running.peer.result_for(header(1))
        slow_everything(monkeypatch, 0.1)
        start = time.monotonic()
        answer = everything_async(running, points_per_side=32)
        wait_until(answer.done, 10, "the answer")
        assert not answer.result().success and "abandoned" in answer.result().message
        assert time.monotonic() - start < 3.0 and running.node.queued_requests() == 0
    finally:
        running.close()


def test_segment_everything_refuses_what_one_pass_may_not_ask(checkpoint):
    running = Running(checkpoint)
    try:
        for fields, reason in (({"points_per_side": 65}, "points_per_side must be 1..64 (0: the node's "
                                                         "everything_points_per_side), got 65"),
                               ({"pred_iou_thresh": 1.5, "stability_score_thresh": -1.0},
                                "pred_iou_thresh must be within 0..1, got 1.5")):
            answer = everything_async(running, **fields)
            wait_until(answer.done, 30, "the answer")
            assert not answer.result().success and reason in answer.result().message
    finally:
        running.close()


def test_a_parameter_change_never_waits_for_sam2(checkpoint, monkeypatch):
    running = Running(checkpoint)
    try:
        running.peer.publish_rgb(photo("coffee"), header(1))
        running.peer.result_for(header(1))
        started, real = threading.Event(), StreamingTracker.add_prompt

        def slow_add(*args, **kwargs):  # SAM 2 busy with a prompt for 3 s
            started.set()
            time.sleep(3.0)
            return real(*args, **kwargs)
        monkeypatch.setattr(StreamingTracker, "add_prompt", slow_add)
        answer = []
        caller = threading.Thread(target=lambda: answer.append(add(running, box_prompt([10, 10, 200, 200]))))
        caller.start()
        wait_until(started.is_set, 30, "the prompt to reach SAM 2")
        start = time.monotonic()
        assert running.node.set_parameters([Parameter("score_threshold", value=0.3)])[0].successful
        took = time.monotonic() - start
        caller.join()
        assert took < 1.0, f"ros2 param set waited {took:.2f} s for SAM 2"
        assert answer[0].success
    finally:
        running.close()


def test_results_list_objects_in_ascending_id_whatever_order_they_came_in(checkpoint):
    running = Running(checkpoint, mode="image")
    try:
        stamp = header(1)
        running.peer.publish_rgb(photo("coffee"), stamp)
        running.peer.result_for(stamp)
        assert add(running, box_prompt([10, 10, 200, 200], stamp, object_id=5)).success
        answer = add(running, box_prompt([300, 100, 500, 300], stamp, object_id=2))
        assert [o.object_id for o in answer.result.objects] == [2, 5]
        running.peer.publish_rgb(photo("coffee"), header(2))
        assert [o.object_id for o in running.peer.result_for(header(2)).objects] == [2, 5]
    finally:
        running.close()


def test_a_frame_is_published_under_the_settings_it_was_processed_with(checkpoint):
    """The worker hands each frame's settings snapshot to the outputs: a later change is not read half-way."""
    running = Running(checkpoint)
    try:
        live = running.node.config()
        assert live.output.mask_encoding == "mono8"
        snapshot = live.changed(mask_encoding="16UC1")
        rgb = photo("coffee")
        frame = RecentFrame(1, 0, header(7), rgb, EncodedFrame(rgb.shape[:2], None, 0.0), 0)
        running.node.outputs.publish(frame, [], snapshot)
        assert running.peer.mask_for(header(7)).encoding == "16UC1"
    finally:
        running.close()


def test_a_click_before_any_camera_info_is_refused_saying_so_once(checkpoint):
    running = Running(checkpoint)
    try:
        clicks = running.peer.node.create_publisher(PointStamped, "clicked_point", 10)
        wait_until(clicks.get_subscription_count, 30, "the clicked_point subscription")
        clicks.publish(PointStamped(header=header(1)))
        error = wait_until(lambda: running.node.counts().last_error, 30, "the refusal")
        assert error.startswith("clicked point refused: no camera_info received yet")
        assert error.count("refused") == 1
        assert running.node.counts().refused["bad prompt"] == 1
    finally:
        running.close()
