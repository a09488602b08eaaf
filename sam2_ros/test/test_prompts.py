"""Prompt validation: every bad prompt is refused with a message that says what is wrong."""
import numpy as np
import pytest

from sam2_ros.core.prompts import Prompt, PromptError, rescale, validate

HW = (480, 640)


def click(x, y, label=1, **kwargs) -> Prompt:
    return Prompt(object_id=1, points=np.array([[x, y]]), point_labels=np.array([label]), **kwargs)


@pytest.mark.parametrize("prompt, message", [
    (Prompt(object_id=1), "prompt for object 1 is empty: give points, a box or a mask"),
    (click(np.nan, 10), "non-finite point coordinate"),
    (click(10, np.inf), "non-finite point coordinate"),
    (click(10, 10, label=2), r"point labels \[2\]: use 1 \(foreground\) or 0 \(background\)"),
    (Prompt(points=np.array([[1, 2]]), point_labels=np.array([1, 1])), "1 points but 2 point labels"),
    (Prompt(box=np.array([100, 50, 20, 80])), "inverted or empty box"),
    (Prompt(box=np.array([100, 50, 100, 80])), "inverted or empty box"),
    (Prompt(box=np.array([0, 0, np.nan, 5])), "non-finite box"),
    (Prompt(box=np.array([1, 2, 3])), "box of 3 numbers"),
    (click(-5, 10), "falls entirely outside the 640x480 image"),
    (click(700, 500), "falls entirely outside the 640x480 image"),
    (Prompt(box=np.array([650, 10, 700, 40])), "falls entirely outside"),
    (Prompt(box=np.array([10, 500, 40, 600])), "falls entirely outside"),  # below the image, columns inside
    (Prompt(box=np.array([10, -60, 40, -5])), "falls entirely outside"),  # above it
    (Prompt(box=np.array([640, 10, 700, 40])), "falls entirely outside"),  # from the right edge: no column
    (Prompt(box=np.array([10, -30, 40, 0])), "falls entirely outside"),  # up to the top edge: no row
    (click(640, 10), "falls entirely outside"),  # columns are 0..639: x 640 is past the last one
    (click(10, 480), "falls entirely outside"),
    (Prompt(mask=np.zeros(HW, bool)), "empty mask"),
    (Prompt(mask=np.ones((240, 320), bool)), "320x240 mask for a 640x480 image"),
    (Prompt(object_id=0, box=np.array([1, 1, 5, 5])), "object id 0 is invalid: ids start at 1"),
])
def test_bad_prompts_are_refused_with_a_specific_message(prompt, message):
    with pytest.raises(PromptError, match=message):
        validate(prompt, HW)


def test_points_and_boxes_partly_outside_are_clipped_to_the_image():
    prompt = Prompt(points=np.array([[10, 10], [900, -3]]), point_labels=np.array([1, 0]),
                    box=np.array([-20, 5, 700, 490]))
    checked = validate(prompt, HW)
    np.testing.assert_array_equal(checked.points, [[10, 10], [639, 0]])
    np.testing.assert_array_equal(checked.box, [0, 5, 640, 480])
    assert checked.points.dtype == np.float32 and checked.point_labels.dtype == np.int32


def test_a_click_on_the_last_pixel_and_a_box_one_pixel_in_are_inside():
    assert validate(click(639.5, 479.5), HW).points.tolist() == [[639, 479]]  # kept, at the last pixel
    assert validate(Prompt(box=np.array([639, 479, 700, 500])), HW).box.tolist() == [639, 479, 640, 480]


def test_a_box_partly_inside_with_no_points_is_kept():
    assert validate(Prompt(box=np.array([600, 400, 800, 600])), HW).box.tolist() == [600, 400, 640, 480]


def test_a_single_click_is_the_ambiguous_case_and_anything_more_is_not():
    assert click(5, 5).is_single_click
    assert not click(5, 5, box=np.array([0, 0, 9, 9])).is_single_click
    assert not Prompt(points=np.zeros((2, 2)), point_labels=np.ones(2)).is_single_click


def test_a_prompt_moves_with_a_change_of_camera_resolution():
    prompt = Prompt(points=np.array([[600.0, 440.0]]), point_labels=np.array([1]),
                    box=np.array([64.0, 48.0, 320.0, 240.0]))
    moved = rescale(prompt, (480, 640), (720, 1280))
    np.testing.assert_allclose(moved.points, [[1200.0, 660.0]])  # 94% / 92% of the image, as before
    np.testing.assert_allclose(moved.box, [128.0, 72.0, 640.0, 360.0])
    assert moved.point_labels.tolist() == [1]


def test_a_mask_prompt_is_resized_and_stays_binary():
    mask = np.zeros((4, 6), bool)
    mask[0:2, 0:3] = True  # the top-left quarter
    moved = rescale(Prompt(mask=mask), (4, 6), (8, 12)).mask
    expected = np.zeros((8, 12), bool)
    expected[0:4, 0:6] = True
    assert moved.dtype == bool
    np.testing.assert_array_equal(moved, expected)
