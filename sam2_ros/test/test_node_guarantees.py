"""The node's promises under abuse, over the real middleware.

Every output describes exactly the frame whose header it carries; no single message, flood
or transition can exhaust, stall or kill it; every request gets one true answer.
"""
import gc
import sys
import threading

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import Point32
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from conftest import fail_model_step, photo, slow_frames
from rosharness import NODE, Running, add, box_prompt, detection, detections, full_mask, header, wait_until
from sam2_ros.core.prompts import Prompt
from sam2_ros.core.segmenter import Segmenter
from sam2_ros.core.tracker import StreamingTracker
from sam2_ros.ros.conversions import array_to_image, image_to_array
from sam2_ros.tools.scenes import object_box, pan_clip
from sam2_ros_interfaces.msg import Prompt as PromptMsg
from sam2_ros_interfaces.srv import AddObjects, RemoveObject, Segment

VGA, HD = (640, 480), (1280, 720)


def camera(size) -> np.ndarray:
    return cv2.resize(photo("astronaut"), size, interpolation=cv2.INTER_AREA)


def processed(running, rgb, stamp):
    running.peer.publish_rgb(rgb, stamp)
    return running.peer.result_for(stamp)


def quiet(running) -> None:
    """Wait until every request queued so far has run: services are answered in queue order."""
    answer = running.peer.call(RemoveObject, f"{NODE}/remove_object", RemoveObject.Request(object_id=250))
    assert not answer.success and "no object with id 250" in answer.message


# ----- every output describes the frame whose header it carries -----
def test_a_repeated_stamp_never_gives_a_result_another_frames_header(running):
    frames = [(header(1, frame_id="first"), camera(VGA)), (header(2, frame_id="second"), camera(VGA)),
              (header(1, frame_id="third"), camera((320, 240)))]  # a looping bag, at another size
    for stamp, rgb in frames:
        processed(running, rgb, stamp)
    newest = add(running, box_prompt([10, 10, 100, 100]))
    assert newest.success, newest.message
    assert newest.result.header.frame_id == "third" and (newest.result.height, newest.result.width) == (240, 320)
    stamped = add(running, box_prompt([20, 20, 120, 120], header(1, frame_id="first")))
    assert stamped.success and stamped.result.header.frame_id == "third"
    assert all(o.box.x_offset + o.box.width <= 320 for o in stamped.result.objects)


def test_switching_to_mono8_while_an_id_over_255_is_tracked_is_refused(checkpoint):
    running = Running(checkpoint, mask_encoding="16UC1")
    try:
        processed(running, camera(VGA), header(1))
        assert add(running, box_prompt([100, 50, 400, 400], header(1), object_id=300)).success
        refused = running.node.set_parameters([Parameter("mask_encoding", value="mono8")])[0]
        assert not refused.successful and "[300] do not fit a mono8 label image" in refused.reason
        stamp = header(2, frame_id="next")
        assert [o.object_id for o in processed(running, camera(VGA), stamp).objects] == [300]
        label = running.peer.mask_for(stamp)
        assert label.encoding == "16UC1" and set(np.unique(image_to_array(label))) <= {0, 300}
        assert running.node.counts().failed == 0
    finally:
        running.close()


def fail_on_node_step(monkeypatch, running, call: int) -> None:
    """The node's `call`-th SAM 2 step from now raises, on the reference path (a step per object)."""
    assert running.node.set_parameters([Parameter("batch_objects", value=False)])[0].successful
    fail_model_step(monkeypatch, running.node.model, call)


def test_a_request_that_fails_part_way_applies_none_of_it(running, monkeypatch):
    stamp = header(1)
    processed(running, camera(VGA), stamp)
    fail_on_node_step(monkeypatch, running, 2)
    answer = add(running, box_prompt([10, 10, 200, 200], stamp), box_prompt([300, 100, 500, 400], stamp))
    assert not answer.success and "out of memory" in answer.message
    assert running.node.session.object_labels() == {} and running.node.counts().failed == 1
    assert processed(running, camera(VGA), header(2)).objects == []


def test_add_objects_failing_on_its_last_prompt_undoes_the_added_and_the_corrected_objects(
        running, small_model, monkeypatch):
    """Fail late, over the service: a new object and a correction went through, the third step fails."""
    images, truths = pan_clip(5)
    reference = StreamingTracker(small_model)  # the same frames and prompts, never the failed request
    reference.batch_objects = False  # the node runs a step per object below, as the fault needs
    assert running.node.set_parameters([Parameter("batch_objects", value=False)])[0].successful
    first = header(1)
    processed(running, images[0], first)
    reference.track(images[0])
    click = PromptMsg(header=first, object_id=-1, points=[Point32(x=250.0, y=50.0)], point_labels=[1])
    for object_id, prompt in ((1, box_prompt(object_box(truths[0]), first)), (2, click)):
        assert list(add(running, prompt).object_ids) == [object_id]
    reference.add_prompt(Prompt(object_id=1, box=object_box(truths[0])))
    reference.add_prompt(Prompt(object_id=2, points=np.array([[250.0, 50.0]]), point_labels=np.array([1])))
    processed(running, images[1], header(2))
    reference.track(images[1])

    fail_model_step(monkeypatch, running.node.model, 3)
    answer = add(running, box_prompt([10, 10, 80, 80], header(2), object_id=3),  # step 1: added
                 PromptMsg(header=header(2), object_id=1, points=[Point32(x=60.0, y=60.0)], point_labels=[0]),  # 2
                 PromptMsg(header=header(2), object_id=2, points=[Point32(x=240.0, y=60.0)], point_labels=[1]))
    monkeypatch.undo()
    assert not answer.success and "out of memory" in answer.message
    assert sorted(running.node.session.object_labels()) == [1, 2]
    for t in (2, 3, 4):  # every later mask as if the request had never been sent
        result = processed(running, images[t], header(1 + t))
        expected = reference.track(images[t]).objects
        assert [o.object_id for o in result.objects] == [o.object_id for o in expected] == [1, 2]
        for obj, want in zip(result.objects, expected):
            np.testing.assert_array_equal(full_mask(obj, truths[t].shape), want.mask)
            assert obj.score == pytest.approx(want.score, abs=1e-6)


def test_a_frame_that_fails_part_way_leaves_prompts_on_the_last_good_frame(running, monkeypatch):
    good = header(1, frame_id="good")
    processed(running, camera(VGA), good)
    assert add(running, box_prompt([10, 10, 200, 200], good), box_prompt([300, 100, 500, 400], good)).success
    fail_on_node_step(monkeypatch, running, 2)  # the second object of the next frame
    running.peer.publish_rgb(camera(HD), header(2, frame_id="failed"))
    wait_until(lambda: running.node.counts().failed == 1, 60, "the failed frame")
    monkeypatch.undo()
    answer = add(running, box_prompt([50, 50, 150, 150]))
    assert answer.success, answer.message
    assert answer.result.header == good and (answer.result.height, answer.result.width) == (480, 640)


# ----- no message can exhaust the node -----
def test_an_image_over_the_pixel_limit_is_refused_counted_and_not_a_model_failure(running):
    huge = Image(header=header(3), height=30000, width=30000, encoding="rgb8", step=90000, data=b"")
    running.peer.camera.publish(huge)
    wait_until(lambda: running.node.counts().refused["image too large"] == 1, 30, "the refusal")
    assert "30000x30000 = 900.0 megapixels is over the limit of 16.0" in running.node.counts().last_error
    assert processed(running, camera(VGA), header(4)).width == 640 and running.node.counts().failed == 0


@pytest.mark.parametrize("bad, reason", [
    (Image(height=2, width=5, encoding="uyvy", step=10, data=bytes(20)), "width must be even"),
    (Image(height=3, width=4, encoding="nv12", step=4, data=bytes(24)), "must be even"),
])
def test_undecodable_images_are_rejections_never_model_failures(running, bad, reason):
    bad.header = header(5)
    running.peer.camera.publish(bad)
    wait_until(lambda: reason in running.node.counts().last_error, 30, "the rejection")
    assert running.node.counts().refused["bad image"] == 1 and running.node.counts().failed == 0


def test_a_prompt_with_too_many_points_is_refused_at_once(running):
    processed(running, camera(VGA), header(6))
    points = [Point32(x=float(i % 640), y=float(i % 480)) for i in range(48_000)]
    answer = add(running, PromptMsg(object_id=-1, points=points, point_labels=[1] * len(points)))
    assert not answer.success and "48000 points, over the limit of 64 (max_prompt_points)" in answer.message
    assert running.node.session.object_labels() == {}


def test_a_prompt_flood_is_refused_beyond_the_queue_and_the_camera_keeps_flowing(checkpoint):
    running = Running(checkpoint, max_queued_requests=4, requests_per_frame=1)
    try:
        processed(running, camera(VGA), header(7))
        assert add(running, box_prompt([100, 50, 400, 400], header(7), object_id=1)).success
        deepest = []
        for i in range(300):  # corrections delivered faster than DDS's queue depth would let through
            running.node.inputs.prompt_cb(PromptMsg(object_id=1, points=[Point32(x=200.0 + i % 50, y=200.0)],
                                              point_labels=[1]))
            deepest.append(running.node.queued_requests())
        last = header(8, frame_id="during the flood")
        running.peer.publish_rgb(camera(VGA), last)
        assert running.peer.result_for(last, timeout=60).objects[0].object_id == 1
        wait_until(lambda: running.node.counts().refused["request not queued"] > 0, 30, "refusals")
        assert max(deepest) <= 4 and running.node.counts().failed == 0
    finally:
        running.close()


# ----- every request gets one true answer -----
def test_a_request_not_started_in_time_is_cancelled_and_never_applied(checkpoint, monkeypatch):
    running = Running(checkpoint, request_timeout_s=0.5)
    try:
        processed(running, camera(VGA), header(9))
        busy = slow_frames(monkeypatch, 3.0)
        running.peer.publish_rgb(camera(VGA), header(10))
        wait_until(busy.is_set, 30, "a frame in flight")
        answer = add(running, box_prompt([100, 50, 400, 400]))
        assert not answer.success and "was cancelled" in answer.message
        running.peer.result_for(header(10))
        monkeypatch.undo()
        assert processed(running, camera(VGA), header(11)).objects == []
        assert running.node.session.object_labels() == {} and running.node.counts().refused["request cancelled"] == 1
    finally:
        running.close()


def test_deactivate_answers_every_queued_request(running, monkeypatch):
    processed(running, camera(VGA), header(12))
    busy = slow_frames(monkeypatch, 2.0)
    running.peer.publish_rgb(camera(VGA), header(13))
    wait_until(busy.is_set, 30, "a frame in flight")
    client = running.peer.node.create_client(AddObjects, f"{NODE}/add_objects")
    futures = [client.call_async(AddObjects.Request(prompts=[box_prompt([10, 10, 90, 90])])) for _ in range(3)]
    wait_until(lambda: running.node.queued_requests() == 3, 30, "three queued requests")
    running.node.trigger_deactivate()
    wait_until(lambda: all(f.done() for f in futures), 30, "every answer")
    assert [(f.result().success, f.result().message) for f in futures] == [(False, "node deactivated")] * 3
    assert running.node.session.object_labels() == {}


def test_a_batch_with_a_prompt_the_tracker_cannot_take_applies_none(running):
    stamp = header(14)
    processed(running, camera(VGA), stamp)
    mask = np.zeros((480, 640), np.uint8)
    mask[100:200, 100:200] = 255
    mixed = PromptMsg(header=stamp, object_id=-1, box=[90.0, 90.0, 210.0, 210.0],
                      mask=array_to_image(mask, "mono8", stamp))
    answer = add(running, box_prompt([300, 100, 500, 400], stamp), mixed)
    assert not answer.success and "a binary mask alone" in answer.message
    assert running.node.session.object_labels() == {}


def test_segment_service_numbers_new_prompts_around_the_ids_given(running):
    stamp = header(15)
    processed(running, camera(VGA), stamp)
    request = Segment.Request(prompts=[box_prompt([10, 10, 200, 200], stamp),
                                       box_prompt([300, 100, 500, 400], stamp, object_id=1)])
    answer = running.peer.call(Segment, f"{NODE}/segment", request)
    assert answer.success and [o.object_id for o in answer.result.objects] == [1, 2]  # ascending ids
    twice = Segment.Request(prompts=[box_prompt([10, 10, 200, 200], stamp, object_id=3)] * 2)
    refused = running.peer.call(Segment, f"{NODE}/segment", twice)
    assert not refused.success and "object ids [3] appear more than once" in refused.message


# ----- prompts follow the camera's resolution -----
def test_track_mode_scales_a_prompt_stamped_before_a_resolution_change(running, small_model):
    small, large = camera(VGA), camera(HD)
    processed(running, small, header(16))
    processed(running, large, header(17))
    click = PromptMsg(header=header(16), object_id=-1, points=[Point32(x=600.0, y=440.0)], point_labels=[1])
    answer = add(running, click)
    assert answer.success and answer.result.header == header(17)
    core = StreamingTracker(small_model)
    core.track(small)
    core.track(large)
    _, expected = core.add_prompt(Prompt(object_id=1, points=np.array([[1200.0, 660.0]]), point_labels=np.array([1])))
    np.testing.assert_array_equal(full_mask(answer.result.objects[0], (720, 1280)), expected.objects[0].mask)


def test_image_mode_keeps_prompts_in_force_relative_to_the_image(checkpoint, small_model):
    running = Running(checkpoint, mode="image")
    try:
        processed(running, camera(VGA), header(18))
        click = PromptMsg(header=header(18), object_id=-1, points=[Point32(x=600.0, y=440.0)], point_labels=[1])
        assert add(running, click).success
        result = processed(running, camera(HD), header(19))
        prompt = Prompt(object_id=1, points=np.array([[1200.0, 660.0]]), point_labels=np.array([1]))
        expected = Segmenter(small_model).segment(camera(HD), [prompt]).objects[0].mask
        np.testing.assert_array_equal(full_mask(result.objects[0], (720, 1280)), expected)
    finally:
        running.close()


def test_image_mode_resizes_a_mask_prompt_for_frames_of_another_size(checkpoint, small_model):
    running = Running(checkpoint, mode="image")
    try:
        stamp = header(26)
        processed(running, camera(VGA), stamp)
        mask = np.zeros((480, 640), np.uint8)
        mask[120:360, 160:480] = 255
        assert add(running, PromptMsg(header=stamp, object_id=-1, mask=array_to_image(mask, "mono8", stamp))).success
        result = processed(running, camera(HD), header(27))
        big = np.zeros((720, 1280), bool)
        big[180:540, 320:960] = True  # the same region, worked out by hand at 2x / 1.5x
        expected = Segmenter(small_model).segment(camera(HD), [Prompt(object_id=1, mask=big)]).objects[0].mask
        np.testing.assert_array_equal(full_mask(result.objects[0], (720, 1280)), expected)
        assert running.node.counts().rejected == 0
    finally:
        running.close()


# ----- clicks -----
def test_a_3d_click_in_the_optical_frame_stamped_for_a_skipped_frame_lands_on_its_pixel(running, small_model):
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import CameraInfo
    info = CameraInfo(width=1280, height=960, k=[1000.0, 0, 640, 0, 1000.0, 480, 0, 0, 1])  # twice the image size
    info.header.frame_id = "camera_optical"
    infos = running.peer.node.create_publisher(CameraInfo, "camera_info", 10)
    clicks = running.peer.node.create_publisher(PointStamped, "clicked_point", 10)
    wait_until(lambda: infos.get_subscription_count() and clicks.get_subscription_count(), 30, "subscriptions")
    image = camera(VGA)
    processed(running, image, header(40, frame_id="camera_optical"))
    infos.publish(info)
    wait_until(lambda: running.node.inputs.camera_info() is not None, 30, "the camera info")
    click = PointStamped()
    click.header = header(40, 500_000_000, frame_id="camera_optical")  # a frame the node has not processed
    click.point.x, click.point.y, click.point.z = 0.2, 0.1, 2.0  # u = 1000*0.1 + 640 = 740, v = 530 at 1280x960
    clicks.publish(click)
    wait_until(lambda: running.node.queued_requests() == 1, 30, "the click waiting for its frame")
    assert not running.node.session.object_labels()
    processed(running, image, header(41, frame_id="camera_optical"))  # the first frame after the click's stamp
    wait_until(lambda: running.node.session.object_labels(), 30, "the click to start an object")
    core = StreamingTracker(small_model)
    core.track(image)
    core.track(image)
    _, expected = core.add_prompt(Prompt(object_id=1, points=np.array([[370.0, 265.0]]), point_labels=np.array([1])))
    published = wait_until(lambda: running.peer.results[-1].objects, 30, "the click's result")[0]
    np.testing.assert_array_equal(full_mask(published, image.shape[:2]), expected.objects[0].mask)
    click.header.frame_id = "map"
    clicks.publish(click)
    wait_until(lambda: "frame 'map', not the camera's optical frame" in running.node.counts().last_error, 30, "refusal")


# ----- detector boxes -----
def test_image_mode_detector_boxes_keep_the_best_drop_bad_ones_alone_and_clear_when_empty(checkpoint):
    running = Running(checkpoint, mode="image", max_objects=3)
    try:
        stamp = header(20)
        processed(running, camera(VGA), stamp)
        assert add(running, box_prompt([10, 10, 100, 100], stamp, label="user")).success
        running.node.inputs.detections_cb(detections(stamp, detection(300, 300, 80, 80, "a", 0.9),
                                                detection(200, 200, 0, 50, "flat", 1.0),
                                                detection(400, 100, 60, 60, "b", 0.5),
                                                detection(500, 300, 60, 60, "c", 0.7),
                                                detection(math_inf(), 100, 60, 60, "far", 1.0)))
        quiet(running)
        labels = sorted(o.label for o in processed(running, camera(VGA), header(21)).objects)
        assert labels == ["a", "c", "user"]
        assert running.node.counts().refused["bad detection"] == 3  # flat, far, and b over max_objects
        running.node.inputs.detections_cb(detections(header(21)))
        quiet(running)
        assert [o.label for o in processed(running, camera(VGA), header(22)).objects] == ["user"]
        assert running.node.counts().failed == 0
    finally:
        running.close()


def math_inf() -> float:
    return float("inf")


def test_image_mode_detector_boxes_expire_when_detections_stop(checkpoint):
    running = Running(checkpoint, mode="image", detections_timeout_s=3.0)  # frame 29 comes well within it
    try:
        stamp = header(28)
        processed(running, camera(VGA), stamp)
        running.node.inputs.detections_cb(detections(stamp, detection(300, 300, 80, 80, "a", 0.9)))
        quiet(running)
        assert [o.label for o in processed(running, camera(VGA), header(29)).objects] == ["a"]
        wait_until(lambda: not running.node.session.object_labels(), 10, "the detector's boxes to expire")
        assert processed(running, camera(VGA), header(30)).objects == []
    finally:
        running.close()


def test_track_mode_detections_that_add_nothing_publish_nothing(running):
    stamp = header(23)
    processed(running, camera(VGA), stamp)
    assert add(running, box_prompt([100, 50, 400, 470], stamp, label="person")).success
    result = processed(running, camera(VGA), header(24))
    obj = result.objects[0]
    before = len(running.peer.results)
    covered = detection(obj.box.x_offset + obj.box.width / 2, obj.box.y_offset + obj.box.height / 2,
                        obj.box.width / 2, obj.box.height / 2, "person", 0.9)
    running.node.inputs.detections_cb(detections(header(24), covered))
    quiet(running)
    assert len(running.peer.results) == before and sorted(running.node.session.object_labels()) == [1]


# ----- the process -----
def test_the_node_leaves_the_process_as_it_found_it(checkpoint):
    interval, frozen = sys.getswitchinterval(), gc.get_freeze_count()
    running = Running(checkpoint)
    try:
        processed(running, camera(VGA), header(25))
        assert sys.getswitchinterval() == interval and gc.get_freeze_count() == frozen
    finally:
        running.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("sam2_describe", "sam2_worker"))]

