"""Text prompts through the node: on the prompt topic, in ~/add_objects and as the text_prompt parameter.

The detector is a small `transformers` Grounding DINO with seeded random weights (detectors.py),
loaded from its folder; SAM 2 runs on the seeded checkpoint, over the real middleware.
"""
import threading
import time

import pytest
from detectors import save_grounding_dino
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message

from conftest import photo
from rosharness import Running, add, box_prompt, header, wait_until
from sam2_ros_interfaces.msg import Prompt as PromptMsg


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> str:
    return str(save_grounding_dino(tmp_path_factory.mktemp("gd") / "grounding_dino"))


def labelled(result) -> dict[int, str]:
    return {o.object_id: o.label for o in result.objects}


def test_a_text_prompt_adds_objects_labelled_with_their_phrases_whose_ids_last_across_passes(checkpoint, detector):
    running = Running(checkpoint, text_detector=detector, text_box_threshold=0.3, text_period_s=0.2,
                      text_slice_ms=200.0)
    try:
        image = photo("coffee")
        running.peer.publish_rgb(image, header(1))
        running.peer.result_for(header(1))
        answer = add(running, box_prompt([5, 5, 60, 60], header(1), label="mine"), PromptMsg(object_id=-1,
                                                                                           text="cup . red ball"))
        assert answer.success, answer.message
        assert list(answer.object_ids) == [1, -1]

        second = [2]

        def found():
            second[0] += 1
            running.peer.publish_rgb(image, header(second[0]))
            result = running.peer.result_for(header(second[0]))
            return len(result.objects) > 1 and result
        first = labelled(wait_until(found, 120, "objects from the text prompt"))
        assert first[1] == "mine" and set(first.values()) - {"mine"} <= {"cup", "red ball"}
        seen = []
        running.peer.node.create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)

        def passes() -> dict | None:  # the same scene each frame: every pass finds the same boxes again
            second[0] += 1
            running.peer.publish_rgb(image, header(second[0]))
            assert labelled(running.peer.result_for(header(second[0]))) == first
            values = seen and {kv.key: kv.value for kv in seen[-1].status[0].values}
            return values and int(values["text passes"]) >= 3 and values
        values = wait_until(passes, 120, "three text detector passes")
        assert values["text prompt"] == "cup . red ball"
        assert int(values["objects from text"]) == len(first) - 1
    finally:
        running.close()


def test_a_text_prompt_sent_before_the_cameras_first_frame_waits_for_it(checkpoint, detector):
    running = Running(checkpoint, text_detector=detector, text_box_threshold=0.3, text_slice_ms=200.0)
    prompts = running.peer.node.create_publisher(PromptMsg, "prompt", 10)
    try:
        wait_until(prompts.get_subscription_count, 30, "the prompt subscription")
        prompts.publish(PromptMsg(object_id=-1, text="cup . red ball"))
        wait_until(lambda: running.node.queued_requests() == 1, 30, "the text prompt waiting for a frame")
        image, stamp = photo("coffee"), [0]

        def found():
            stamp[0] += 1
            running.peer.publish_rgb(image, header(stamp[0]))
            return running.peer.result_for(header(stamp[0])).objects
        objects = wait_until(found, 120, "objects from the text prompt")
        assert {o.label for o in objects} <= {"cup", "red ball"}
        assert running.node.counts().rejected == 0
    finally:
        running.close()


def test_bad_text_is_refused_with_the_reason_and_nothing_tracked_is_lost(checkpoint, detector):
    running = Running(checkpoint, text_detector=detector)
    try:
        image = photo("coffee")
        running.peer.publish_rgb(image, header(1))
        running.peer.result_for(header(1))
        assert add(running, box_prompt([5, 5, 60, 60], header(1), label="mine")).success

        too_long = add(running, PromptMsg(object_id=-1, text="cup " * 2500))
        assert not too_long.success and "10000 characters is over the limit of 1000" in too_long.message
        empty = add(running, PromptMsg(object_id=-1, text=" . "))
        assert not empty.success and "text prompt is empty" in empty.message

        seen = []
        running.peer.node.create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)
        prompts = running.peer.node.create_publisher(PromptMsg, "prompt", 10)
        wait_until(lambda: prompts.get_subscription_count(), 30, "the prompt subscription")
        raw = serialize_message(PromptMsg(object_id=-1, text="cupX"))
        prompts.publish(raw.replace(b"cupX", b"cu\xff\xfe"))  # bytes that are not UTF-8

        def refused():
            values = seen and {kv.key: kv.value for kv in seen[-1].status[0].values}
            return values and "not valid UTF-8" in values["last error"] and values
        values = wait_until(refused, 30, "the refusal")
        assert values["refused: bad prompt"] == "1" and values["model failures"] == "0"

        rejected = running.node.set_parameters([Parameter("text_prompt", value=" . ")])[0]
        assert not rejected.successful and "text_prompt: text prompt is empty" in rejected.reason

        running.peer.publish_rgb(image, header(2))
        assert {o.object_id: o.label for o in running.peer.result_for(header(2)).objects} == {1: "mine"}
    finally:
        running.close()


def test_the_text_prompt_parameter_starts_the_detector_and_clearing_it_drops_its_objects_when_asked(
        checkpoint, detector):
    running = Running(checkpoint, text_detector=detector, text_box_threshold=0.3, text_keep_objects=False,
                      text_max_objects=2, text_slice_ms=200.0)
    try:
        image = photo("coffee")
        running.peer.publish_rgb(image, header(1))
        running.peer.result_for(header(1))
        assert running.node.set_parameters([Parameter("text_prompt", value="cup")])[0].successful
        stamp = [1]

        def tracked(count):
            stamp[0] += 1
            running.peer.publish_rgb(image, header(stamp[0]))
            result = running.peer.result_for(header(stamp[0]))
            return len(result.objects) == count and result
        result = wait_until(lambda: tracked(2), 120, "two objects from text_prompt")
        assert {o.label for o in result.objects} == {"cup"}
        assert running.node.set_parameters([Parameter("text_prompt", value="")])[0].successful
        wait_until(lambda: tracked(0), 60, "the text prompt's objects removed")
    finally:
        running.close()


def test_a_text_prompt_runs_on_the_newest_frame_in_the_time_the_camera_leaves_idle(checkpoint, detector):
    """No frame comes after the prompt: the pass computes while the model waits, and its objects are published.

    Taking only text_slice_ms (1 ms: one operation) after each frame, it would need thousands of frames.
    """
    running = Running(checkpoint, text_detector=detector, text_box_threshold=0.3, text_slice_ms=1.0)
    try:
        image = photo("coffee")
        running.peer.publish_rgb(image, header(1))
        running.peer.result_for(header(1))
        answer = add(running, PromptMsg(object_id=-1, text="cup"))
        assert answer.success and list(answer.object_ids) == [-1], answer.message
        result = wait_until(lambda: next((r for r in running.peer.results if r.objects), None), 120,
                            "the text prompt's objects")
        assert result.header.stamp == header(1).stamp and {o.label for o in result.objects} == {"cup"}
    finally:
        running.close()


def test_a_camera_faster_than_the_model_leaves_no_idle_time_and_passes_still_end_in_slices_after_its_frames(
        checkpoint, detector):
    """A frame always waits when one ends: the pass computes text_slice_ms after each frame, and its objects come."""
    running = Running(checkpoint, text_detector=detector, text_box_threshold=0.3, text_slice_ms=200.0)
    image, flooding = photo("coffee"), threading.Event()

    def camera():  # 100 Hz: SAM 2 takes longer than 10 ms a frame here
        stamp = 0
        while flooding.is_set():
            stamp += 1
            running.peer.publish_rgb(image, header(stamp))
            time.sleep(0.01)
    flooding.set()
    publisher = threading.Thread(target=camera, daemon=True)
    publisher.start()
    try:
        wait_until(lambda: running.peer.results, 60, "a first result")
        answer = add(running, PromptMsg(object_id=-1, text="cup"))
        assert answer.success, answer.message
        result = wait_until(lambda: next((r for r in running.peer.results if r.objects), None), 120,
                            "the text prompt's objects")
        assert {o.label for o in result.objects} == {"cup"}
    finally:
        flooding.clear()
        publisher.join(timeout=5)
        running.close()
