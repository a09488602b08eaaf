"""Image messages -> pixels: cv_bridge's encodings and semantics, and the cases where it fails."""
import array as pyarray

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from sam2_ros.ros.conversions import (
    ImageError,
    ImageTooLarge,
    array_to_image,
    compressed_to_rgb,
    image_to_array,
    image_to_draw_on,
    image_to_rgb,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def message(array: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Rows of `array` with `pad` extra bytes each, in the given byte order."""
    height, width = array.shape[:2]
    raw = array.astype(array.dtype.newbyteorder(">" if bigendian else "<"))
    row = raw.reshape(height, -1).view(np.uint8).reshape(height, -1)
    data = np.concatenate([row, np.full((height, pad), 7, np.uint8)], axis=1).tobytes()
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                 step=row.shape[1] + pad, data=data)


@pytest.mark.parametrize("encoding, array, expected", [
    ("rgb8", RGB, RGB),
    ("bgr8", RGB[..., ::-1], RGB),
    ("8UC3", RGB[..., ::-1], RGB),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
    ("bgra8", np.dstack([RGB[..., ::-1], np.zeros(RGB.shape[:2], np.uint8)]), RGB),
    ("mono8", RGB[..., 0], np.dstack([RGB[..., 0]] * 3)),
    ("8UC1", RGB[..., 1], np.dstack([RGB[..., 1]] * 3)),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_plain_encodings_with_and_without_row_padding(encoding, array, expected, pad):
    np.testing.assert_array_equal(image_to_rgb(message(np.ascontiguousarray(array), encoding, pad)), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 5), st.booleans())
def test_mono16_scales_like_cv_bridge_in_either_byte_order(height, width, pad, bigendian):
    values = np.random.default_rng(height * width).integers(0, 65536, (height, width), dtype=np.uint16)
    rgb = image_to_rgb(message(values, "mono16", pad, bigendian))
    expected = [[round(int(v) * 255 / 65535) for v in row] for row in values]  # plain Python, no numpy
    np.testing.assert_array_equal(rgb[..., 0], expected)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16_bit_grey_keeps_its_brightness_worked_by_hand(encoding):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)  # cv_bridge: 0, 1, 128, 255
    np.testing.assert_array_equal(image_to_rgb(message(values, encoding))[0, :, 0], [0, 1, 128, 255])


@pytest.mark.parametrize("encoding, order", [("rgb16", [0, 1, 2]), ("bgr16", [2, 1, 0]),
                                             ("rgba16", [0, 1, 2, 3]), ("bgra16", [2, 1, 0, 3])])
def test_16_bit_colour_keeps_its_brightness_and_channel_order(encoding, order):
    alpha = [[[1234], [0], [65535]]]  # dropped, as cv_bridge's conversion to rgb8 drops it
    red_grey_white = np.concatenate([[[[65535, 0, 0], [32768, 32768, 32768], [65535, 65535, 65535]]], alpha],
                                    axis=2).astype(np.uint16)
    rgb = image_to_rgb(message(np.ascontiguousarray(red_grey_white[..., order]), encoding))
    np.testing.assert_array_equal(rgb[0], [[255, 0, 0], [128, 128, 128], [255, 255, 255]])


@pytest.mark.parametrize("pattern, code", [("rggb", cv2.COLOR_BayerBG2RGB), ("bggr", cv2.COLOR_BayerRG2RGB),
                                           ("gbrg", cv2.COLOR_BayerGR2RGB), ("grbg", cv2.COLOR_BayerGB2RGB)])
def test_bayer_patterns_demosaic_like_opencv_and_put_red_where_the_pattern_says(pattern, code):
    raw = RNG.integers(0, 256, (8, 10), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(message(raw, f"bayer_{pattern}8", pad=1)),
                                  cv2.cvtColor(raw, code))
    red = np.zeros((8, 10), np.uint8)
    row, col = divmod(pattern.index("r"), 2)
    red[row::2, col::2] = 200  # light only on the red sites: the image must come out red
    rgb = image_to_rgb(message(red, f"bayer_{pattern}8"))
    assert rgb[2:6, 2:8, 0].mean() > 150 and rgb[2:6, 2:8, 1:].max() == 0


@pytest.mark.parametrize("pattern, code", [("rggb", cv2.COLOR_BayerBG2RGB), ("gbrg", cv2.COLOR_BayerGR2RGB)])
def test_16_bit_bayer_demosaics_then_scales_as_cv_bridge_does(pattern, code):
    """cv_bridge converts colour first (OpenCV on the 16-bit data), then depth (v * 255 / 65535)."""
    raw = RNG.integers(0, 65536, (6, 8), dtype=np.uint16)
    demosaiced = cv2.cvtColor(raw, code)
    expected = [[[round(int(v) * 255 / 65535) for v in pixel] for pixel in row] for row in demosaiced]
    np.testing.assert_array_equal(image_to_rgb(message(raw, f"bayer_{pattern}16", pad=2, bigendian=True)), expected)
    bright = np.full((6, 8), 65535, np.uint16)  # saturated: white, not the near-black of a wrapped scale
    assert image_to_rgb(message(bright, f"bayer_{pattern}16")).min() == 255


@pytest.mark.parametrize("encoding, code", [("yuv422", cv2.COLOR_YUV2RGB_UYVY), ("uyvy", cv2.COLOR_YUV2RGB_UYVY),
                                            ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2),
                                            ("yuyv", cv2.COLOR_YUV2RGB_YUY2)])
def test_packed_yuv_equals_opencv(encoding, code):
    packed = RNG.integers(0, 256, (6, 8, 2), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(message(packed, encoding, pad=2)), cv2.cvtColor(packed, code))


@pytest.mark.parametrize("encoding, data", [
    ("uyvy", [84, 76, 255, 76]), ("yuv422", [84, 76, 255, 76]),  # U Y0 V Y1
    ("yuyv", [76, 84, 76, 255]), ("yuv422_yuy2", [76, 84, 76, 255]),  # Y0 U Y1 V
])
def test_packed_yuv_red_worked_by_hand(encoding, data):
    """BT.601: Y=76, U=84, V=255 is red: R = 76 + 1.403 * 127 = 254, G = 76 + 0.344 * 44 - 0.714 * 127 = 0,
    B = 76 - 1.773 * 44 < 0 -> 0.
    """
    rgb = image_to_rgb(Image(height=1, width=2, encoding=encoding, step=4, data=bytes(data)))
    assert np.abs(rgb.astype(int) - [254, 0, 0]).max() <= 1, rgb


@pytest.mark.parametrize("encoding, chroma", [("nv21", [255, 84]), ("nv12", [84, 255])])  # VU / UV
def test_planar_yuv_red_worked_by_hand(encoding, chroma):
    data = bytes([76] * 4 + chroma)  # a 2 x 2 luma plane, one chroma pair
    rgb = image_to_rgb(Image(height=2, width=2, encoding=encoding, step=2, data=data))
    assert np.abs(rgb.astype(int) - [254, 0, 0]).max() <= 1, rgb


def test_nv21_which_cv_bridge_rejects_converts_like_opencv():
    planes = RNG.integers(0, 256, (9, 8), dtype=np.uint8)  # 6 rows of Y, 3 of interleaved VU
    msg = Image(height=6, width=8, encoding="nv21", step=8, data=planes.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg), cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_NV21))


@pytest.mark.parametrize("msg, error", [
    (Image(height=2, width=2, encoding="32FC1", step=8, data=bytes(16)), "32FC1 is a depth encoding"),
    (Image(height=2, width=2, encoding="64FC1", step=16, data=bytes(32)), "unsupported image encoding '64FC1'"),
    (Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(40)), "has 40 bytes, but 4x4 rgb8"),
    (Image(height=0, width=4, encoding="rgb8", step=12, data=b""), "zero-size image"),
    (Image(height=2, width=4, encoding="rgb8", step=10, data=bytes(20)), "step 10 is shorter"),
])
def test_bad_images_are_refused_with_the_reason(msg, error):
    with pytest.raises(ImageError, match=error):
        image_to_rgb(msg)


def test_compressed_jpeg_and_png_decode_and_garbage_is_refused():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    np.testing.assert_array_equal(compressed_to_rgb(CompressedImage(format="png", data=png.tobytes())), RGB)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    assert compressed_to_rgb(CompressedImage(format="jpeg", data=jpeg.tobytes())).shape == (16, 16, 3)
    with pytest.raises(ImageError, match="cannot decode compressed image"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=jpeg.tobytes()[:40]))


def one_bit_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG: a few KB that decode to width x height x 3 bytes."""
    import io

    import PIL.Image
    buffer = io.BytesIO()
    PIL.Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_small_png_declaring_a_huge_image_is_refused_from_its_header():
    data = one_bit_png(5000, 4000)  # 20 megapixels, 60 MB decoded
    assert len(data) < 100_000
    with pytest.raises(ImageTooLarge, match="5000x4000 = 20.0 megapixels is over the limit of 16.0"):
        compressed_to_rgb(CompressedImage(format="png", data=data))
    assert compressed_to_rgb(CompressedImage(format="png", data=data), max_pixels=20_000_000).shape == (4000, 5000, 3)


def test_a_raw_image_declaring_a_huge_size_is_refused_before_its_data_is_read():
    huge = Image(height=30000, width=30000, encoding="rgb8", step=90000, data=b"")
    with pytest.raises(ImageTooLarge, match="30000x30000 = 900.0 megapixels"):
        image_to_rgb(huge)


@pytest.mark.parametrize("encoding, width, height", [
    ("uyvy", 5, 2), ("yuyv", 3, 2), ("yuv422", 7, 1), ("nv12", 5, 4), ("nv21", 4, 3)])
def test_odd_sizes_of_subsampled_yuv_are_bad_input(encoding, width, height):
    msg = Image(height=height, width=width, encoding=encoding, step=width * 2, data=bytes(width * height * 4))
    with pytest.raises(ImageError, match="must be even"):
        image_to_rgb(msg)


def test_label_images_are_little_endian_16_bit_bytes():
    msg = array_to_image(np.array([[1, 300], [0, 65535]], np.uint16), "16UC1", Image().header)
    assert (msg.width, msg.height, msg.step, msg.is_bigendian) == (2, 2, 4, 0)
    assert bytes(msg.data) == bytes([1, 0, 0x2C, 0x01, 0, 0, 0xFF, 0xFF])  # 300 = 0x012C


@pytest.mark.parametrize("big_endian, first", [(False, [0x00, 0x00, 0xC0, 0x3F]), (True, [0x3F, 0xC0, 0x00, 0x00])])
def test_32fc1_depth_is_built_and_read_back_in_either_byte_order(big_endian, first):
    metres = np.array([[1.5, np.inf], [np.nan, 0.25]], np.float32)
    msg = array_to_image(metres, "32FC1", Image().header, big_endian=big_endian)
    assert (msg.step, msg.is_bigendian) == (8, int(big_endian))
    assert list(bytes(msg.data)[:4]) == first  # 1.5 in IEEE 754 single precision is 0x3FC00000
    np.testing.assert_array_equal(image_to_array(msg), metres)


def test_16uc1_depth_is_built_big_endian_high_byte_first():
    msg = array_to_image(np.array([[1500, 1]], np.uint16), "16UC1", Image().header, big_endian=True)
    assert bytes(msg.data) == bytes([0x05, 0xDC, 0x00, 0x01]) and msg.is_bigendian == 1
    assert image_to_array(msg).tolist() == [[1500, 1]]


def test_pixels_reach_a_message_as_a_byte_array_which_field_checks_take_whole():
    """Humble checks every element of anything else in Python: seconds for one camera image."""
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)[:, ::-1]  # not contiguous: copied once
    msg = array_to_image(rgb, "rgb8", Image().header)
    assert isinstance(msg.data, pyarray.array) and msg.data.typecode == "B"
    assert bytes(msg.data) == np.ascontiguousarray(rgb).tobytes()


@pytest.mark.parametrize("encoding, pixels", [("rgb8", RGB), ("16UC1", np.array([[1, 300], [2, 65535]], np.uint16))])
def test_an_image_drawn_on_after_it_was_made_carries_what_was_drawn(encoding, pixels):
    """The overlay is drawn into the message that is sent: no copy of megabytes once it is drawn."""
    source = pixels.copy()
    msg, canvas = image_to_draw_on(pixels, encoding, Image().header)
    np.testing.assert_array_equal(image_to_array(msg), source)
    canvas[0, 1] = 7  # numpy, then OpenCV, writing into the view
    cv2.rectangle(canvas, (0, 1), (0, 1), 9 if canvas.ndim == 2 else (9, 9, 9), cv2.FILLED)
    expected = source.copy()
    expected[0, 1], expected[1, 0] = 7, 9
    np.testing.assert_array_equal(image_to_array(msg), expected)
    np.testing.assert_array_equal(pixels, source)  # what it was made from is left as it was
