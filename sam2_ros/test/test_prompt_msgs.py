"""Prompt, click and detector messages become core prompts with the same meaning."""
from types import SimpleNamespace

import numpy as np
import pytest
from geometry_msgs.msg import Point32
from sensor_msgs.msg import Image

from sam2_ros.core.prompts import PromptError
from sam2_ros.ros.prompt_msgs import from_detections, from_prompt_msg
from sam2_ros_interfaces.msg import Prompt as PromptMsg


def test_a_prompt_message_keeps_points_labels_box_and_mask():
    mask = Image(height=2, width=3, encoding="mono8", step=3, data=bytes([0, 255, 0, 0, 0, 9]))
    prompt = from_prompt_msg(PromptMsg(object_id=4, label="cup", points=[Point32(x=1.5, y=2.0)],
                                       point_labels=[1], box=[1.0, 2.0, 3.0, 4.0], mask=mask))
    assert (prompt.object_id, prompt.label) == (4, "cup")
    np.testing.assert_array_equal(prompt.points, [[1.5, 2.0]])
    np.testing.assert_array_equal(prompt.box, [1, 2, 3, 4])
    np.testing.assert_array_equal(prompt.mask, [[False, True, False], [False, False, True]])


def test_a_label_of_256_characters_is_taken_and_one_of_257_refused():
    assert from_prompt_msg(PromptMsg(label="x" * 256, box=[1.0, 2.0, 3.0, 4.0])).label == "x" * 256
    with pytest.raises(PromptError, match="label of 257 characters is over the limit of 256"):
        from_prompt_msg(PromptMsg(label="x" * 257, box=[1.0, 2.0, 3.0, 4.0]))


def test_an_8uc1_mask_and_a_mask_of_ones_are_read_like_mono8_255():
    """OpenCV's CV_8UC1 is mono8's layout; any non-zero pixel is inside (numpy masks saved as 0/1)."""
    ones = Image(height=1, width=3, encoding="8UC1", step=3, data=bytes([1, 0, 1]))
    np.testing.assert_array_equal(from_prompt_msg(PromptMsg(mask=ones)).mask, [[True, False, True]])


def test_background_clicks_arrive_as_sent():
    points = [Point32(x=10.0, y=20.0), Point32(x=30.0, y=40.0), Point32(x=50.0, y=60.0)]
    prompt = from_prompt_msg(PromptMsg(object_id=-1, points=points, point_labels=[1, 0, 0]))
    assert prompt.point_labels.tolist() == [1, 0, 0]
    np.testing.assert_array_equal(prompt.points, [[10, 20], [30, 40], [50, 60]])


@pytest.mark.parametrize("msg, reason", [
    (PromptMsg(box=[1.0, 2.0]), "box has 2 numbers"),
    (PromptMsg(mask=Image(height=1, width=1, encoding="rgb8", step=3, data=bytes(3))), "must be mono8"),
    (PromptMsg(mask=Image(height=4, width=4, encoding="mono8", step=4, data=bytes(3))), "mask prompt: image data"),
])
def test_malformed_prompt_messages_are_refused(msg, reason):
    with pytest.raises(PromptError, match=reason):
        from_prompt_msg(msg)


def detection(x, y, w, h, hypotheses):
    """The shape of vision_msgs/Detection2D (Humble and later), which cannot be installed here."""
    results = [SimpleNamespace(hypothesis=SimpleNamespace(class_id=c, score=s)) for c, s in hypotheses]
    center = SimpleNamespace(position=SimpleNamespace(x=x, y=y), theta=0.0)
    return SimpleNamespace(bbox=SimpleNamespace(center=center, size_x=w, size_y=h), results=results)


def test_detector_boxes_become_box_prompts_labelled_with_the_best_hypothesis():
    array = SimpleNamespace(detections=[detection(100, 50, 40, 20, [("cup", 0.4), ("mug", 0.9)]),
                                        detection(10, 10, 4, 4, [])])
    detections = from_detections(array)
    prompts = detections.prompts
    assert [p.label for p in prompts] == ["mug", ""] and detections.dropped == []
    np.testing.assert_array_equal(prompts[0].box, [80, 40, 120, 60])
    assert all(p.object_id == -1 for p in prompts)


def test_bad_detector_boxes_are_dropped_one_by_one_and_the_rest_come_best_score_first():
    array = SimpleNamespace(detections=[detection(50, 50, 10, 10, [("low", 0.2)]),
                                        detection(50, 50, 0, 10, [("flat", 0.9)]),
                                        detection(float("inf"), 50, 10, 10, [("far", 0.9)]),
                                        detection(50, 50, 1e39, 10, [("huge", 0.9)]),
                                        detection(20, 20, 10, 10, [("high", 0.8)])])
    detections = from_detections(array)
    assert [p.label for p in detections.prompts] == ["high", "low"]
    assert len(detections.dropped) == 3, detections.dropped
    assert "no area" in detections.dropped[0] and "non-finite" in detections.dropped[1]
    assert "overflows float32" in detections.dropped[2]


def test_prompts_over_the_point_limit_are_refused_before_conversion():
    msg = PromptMsg(points=[Point32(x=1.0, y=1.0)] * 65, point_labels=[1] * 65)
    with pytest.raises(PromptError, match="65 points, over the limit of 64"):
        from_prompt_msg(msg)
    assert len(from_prompt_msg(msg, max_points=65).points) == 65


def test_a_mask_prompt_over_the_pixel_limit_is_refused_before_it_is_read():
    msg = PromptMsg(mask=Image(width=5000, height=4000, encoding="mono8", step=5000, data=b""))
    with pytest.raises(PromptError, match="20.0 megapixels is over the limit of 16.0"):
        from_prompt_msg(msg)
