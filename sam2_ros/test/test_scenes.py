"""The synthetic clip: the cat patch where its ground truth says, on a background that pans."""
import numpy as np
import skimage.data

from sam2_ros.tools.scenes import object_box, pan_clip


def test_the_object_moves_6_px_right_and_2_px_down_per_frame_and_its_truth_is_where_its_pixels_are():
    images, truths = pan_clip(3)
    cat = skimage.data.chelsea()[40:120, 150:230]
    for t, (image, truth) in enumerate(zip(images, truths)):
        assert image.shape == (240, 320, 3) and truth.sum() == 80 * 80
        x, y = 20 + 6 * t, 60 + 2 * t
        assert object_box(truth).tolist() == [x, y, x + 80, y + 80]
        np.testing.assert_array_equal(image[y:y + 80, x:x + 80], cat)


def test_the_background_pans_4_px_per_frame_over_the_astronaut():
    images, truths = pan_clip(2)
    astronaut = skimage.data.astronaut()
    np.testing.assert_array_equal(images[1][:, :][~truths[1]], astronaut[100:340, 4:324][~truths[1]])


def test_a_zoomed_clip_ends_at_the_plain_windows_scale():
    zoomed, _ = pan_clip(5, zoom=1.0)
    plain, truths = pan_clip(5)
    assert not np.array_equal(zoomed[0], plain[0])  # frame 0 sees twice the width, scaled down
    np.testing.assert_array_equal(zoomed[4], plain[4])  # the last frame is the unscaled window
