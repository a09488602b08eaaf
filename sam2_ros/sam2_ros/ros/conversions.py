"""sensor_msgs images <-> numpy, with cv_bridge's encoding names and semantics but not its faults.

Handled where cv_bridge is not: row padding that is not a whole number of pixels,
big-endian data under numpy 2, and the uyvy/yuyv/nv21/nv12 names. No compiled module is
needed, so this also runs where cv_bridge is not installed.
"""
from __future__ import annotations

import array as pyarray
import io

import cv2
import numpy as np
import PIL.Image
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

DEFAULT_MAX_PIXELS = 16_000_000
# Kilted's messages copy an array('B') once more when it is assigned unless their fields are
# checked (a megabyte-size copy per image); Humble's and Jazzy's keep it and know no such argument.
_KEEP_ARRAYS = {"check_fields": True} if "_check_fields" in Image.__slots__ else {}


class ImageError(ValueError):
    """An image message that cannot be turned into pixels; the message says why."""


class ImageTooLarge(ImageError):
    """An image over the pixel limit, refused before anything the size of it is allocated."""


def check_size(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """Refuse images over `max_pixels` (a small message can declare a huge image)."""
    if width * height > max_pixels:
        raise ImageTooLarge(f"{what} of {width}x{height} = {width * height / 1e6:.1f} megapixels is over the "
                            f"limit of {max_pixels / 1e6:.1f} (max_image_pixels): dropped")


# encoding -> (channels, numpy dtype, OpenCV code to RGB or None)
_PLAIN = {
    "rgb8": (3, np.uint8, None), "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB), "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB), "8UC1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, np.uint8, cv2.COLOR_BGR2RGB),  # OpenCV's default order, as cv_bridge assumes
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB), "16UC1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, np.uint16, None), "bgr16": (3, np.uint16, cv2.COLOR_BGR2RGB),
    "rgba16": (4, np.uint16, cv2.COLOR_RGBA2RGB), "bgra16": (4, np.uint16, cv2.COLOR_BGRA2RGB),
}
# depth in metres (REP 118): read and built here, never a camera image for SAM 2
_DEPTH_ONLY = {"32FC1": (1, np.float32)}
# OpenCV names a Bayer pattern by its second row's first two pixels: ROS rggb is OpenCV BG.
_BAYER = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
          "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}
_PACKED_YUV = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
               "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2}
_PLANAR_YUV = {"nv21": cv2.COLOR_YUV2RGB_NV21, "nv12": cv2.COLOR_YUV2RGB_NV12}

SUPPORTED_ENCODINGS = tuple(sorted([*_PLAIN, *_DEPTH_ONLY, *_PACKED_YUV, *_PLANAR_YUV,
                                    *(f"bayer_{p}{bits}" for p in _BAYER for bits in (8, 16))]))


def _layout(encoding: str) -> tuple[int, np.dtype, int]:
    """Return channels, dtype and storage rows per image row of an encoding."""
    if encoding in _PLAIN:
        channels, dtype, _ = _PLAIN[encoding]
        return channels, np.dtype(dtype), 1
    if encoding in _DEPTH_ONLY:
        channels, dtype = _DEPTH_ONLY[encoding]
        return channels, np.dtype(dtype), 1
    if encoding.startswith("bayer_") and encoding[6:10] in _BAYER and encoding[10:] in ("8", "16"):
        return 1, np.dtype(np.uint8 if encoding.endswith("8") else np.uint16), 1
    if encoding in _PACKED_YUV:
        return 2, np.dtype(np.uint8), 1
    if encoding in _PLANAR_YUV:
        return 1, np.dtype(np.uint8), 3  # 3/2 rows of luma+chroma per image row, see below
    raise ImageError(f"unsupported image encoding '{encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}")


def _bytes_view(data) -> memoryview:
    """View a message's uint8[] (array.array, bytes or list) as bytes, copying only a list."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        return memoryview(bytes(data))


def image_to_array(msg: Image) -> np.ndarray:
    """Return the pixels in the message's own encoding (H x W [x C]), native byte order."""
    if msg.height == 0 or msg.width == 0:
        raise ImageError(f"zero-size image ({msg.width}x{msg.height})")
    channels, dtype, _ = _layout(msg.encoding)
    rows = msg.height * 3 // 2 if msg.encoding in _PLANAR_YUV else msg.height
    if msg.encoding in _PLANAR_YUV and (msg.height % 2 or msg.width % 2):
        raise ImageError(f"{msg.encoding} chroma is subsampled 2x2: width and height must be even, "
                         f"got {msg.width}x{msg.height}")
    if msg.encoding in _PACKED_YUV and msg.width % 2:
        raise ImageError(f"{msg.encoding} packs two pixels per chroma pair: width must be even, "
                         f"got {msg.width}")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ImageError(f"step {msg.step} is shorter than a {msg.width}-pixel {msg.encoding} row "
                         f"({row_bytes} bytes)")
    needed = (rows - 1) * msg.step + row_bytes
    data = _bytes_view(msg.data)
    if len(data) < needed:
        raise ImageError(f"image data has {len(data)} bytes, but {msg.width}x{msg.height} "
                         f"{msg.encoding} with step {msg.step} needs {needed}")
    rows_view = np.lib.stride_tricks.as_strided(np.frombuffer(data, np.uint8, count=needed),
                                                shape=(rows, row_bytes), strides=(msg.step, 1))
    pixels = np.ascontiguousarray(rows_view)
    order = ">" if msg.is_bigendian else "<"
    pixels = pixels.view(dtype.newbyteorder(order)).astype(dtype, copy=False)
    return pixels.reshape(rows, msg.width, channels) if channels > 1 else pixels.reshape(rows, msg.width)


def to_8bit(values: np.ndarray) -> np.ndarray:
    """Scale 16-bit to 8-bit as cv_bridge scales mono16 -> mono8: round(v * 255 / 65535).

    In float: under numpy 2 `uint16 * 255` stays uint16 and wraps around.
    """
    if values.dtype == np.uint8:
        return values
    return np.rint(values.astype(np.float32) * np.float32(255 / 65535)).astype(np.uint8)


def image_to_rgb(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert any supported sensor_msgs/Image to H x W x 3 uint8 RGB, the model's input."""
    check_size(msg.width, msg.height, max_pixels)
    pixels = image_to_array(msg)
    try:
        return _to_rgb(pixels, msg.encoding)
    except cv2.error as error:  # whatever OpenCV refuses is the message's fault, not the model's
        raise ImageError(f"cannot convert {msg.width}x{msg.height} {msg.encoding}: {error.err}") from None


def _to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in _DEPTH_ONLY:
        raise ImageError(f"{encoding} is a depth encoding (metres), not a camera image: subscribe `image` "
                         "to the colour stream and `depth` to this one")
    if encoding.startswith("bayer_"):
        return to_8bit(cv2.cvtColor(pixels, _BAYER[encoding[6:10]]))
    if encoding in _PACKED_YUV:
        return cv2.cvtColor(pixels, _PACKED_YUV[encoding])
    if encoding in _PLANAR_YUV:
        return cv2.cvtColor(pixels, _PLANAR_YUV[encoding])
    code = _PLAIN[encoding][2]
    pixels = to_8bit(pixels)
    return np.ascontiguousarray(pixels) if code is None else cv2.cvtColor(pixels, code)


def compressed_size(data: bytes | memoryview) -> tuple[int, int]:
    """Width and height from a jpeg/png header alone: a 100 KB file can declare 30000x30000."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as header:  # reads the header, decodes nothing
            return header.size
    except PIL.Image.DecompressionBombError as error:
        raise ImageTooLarge(f"compressed image declares a huge size: {error}") from None
    except Exception as error:  # Pillow raises many kinds on garbage
        raise ImageError(f"cannot decode compressed image ({len(data)} bytes): its header is unreadable, "
                         f"corrupt or not jpeg/png ({type(error).__name__})") from None


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a jpeg or png sensor_msgs/CompressedImage to H x W x 3 uint8 RGB, size checked first."""
    raw = _bytes_view(msg.data)
    if not len(raw):
        raise ImageError(f"cannot decode compressed image (format '{msg.format}', 0 bytes): empty")
    check_size(*compressed_size(raw), max_pixels, what="compressed image")
    data = np.frombuffer(raw, np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageError(f"cannot decode compressed image (format '{msg.format}', {data.size} bytes): "
                         "corrupt or not jpeg/png")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def array_to_image(array: np.ndarray, encoding: str, header: Header, big_endian: bool = False) -> Image:
    """Pack a numpy image into a sensor_msgs/Image with unpadded rows, little-endian unless asked."""
    array = np.ascontiguousarray(array)
    channels, dtype, _ = _layout(encoding)
    if array.dtype != dtype or (array.ndim == 3 and array.shape[2] != channels):
        raise ImageError(f"{array.dtype} array of shape {array.shape} is not {encoding}")
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                step=width * channels * dtype.itemsize, **_KEEP_ARRAYS)
    msg.data = byte_array(array.astype(dtype.newbyteorder(">" if big_endian else "<"), copy=False))
    return msg


def image_to_draw_on(pixels: np.ndarray, encoding: str, header: Header) -> tuple[Image, np.ndarray]:
    """Return an image message holding a copy of `pixels`, and a writable view of that copy.

    What is drawn into the view is what the message carries: an output image is drawn where it
    is sent from, instead of being copied, megabytes at a time, once drawn.
    """
    msg = array_to_image(pixels, encoding, header)
    _, dtype, _ = _layout(encoding)
    return msg, np.frombuffer(msg.data, dtype.newbyteorder("<")).reshape(pixels.shape)


def byte_array(values: np.ndarray) -> pyarray.array:
    """Copy an array's bytes into what a uint8[] field holds, once.

    Given anything else (bytes, a list) a generated message's setter checks every element in
    Python where fields are checked (always on Humble): seconds for a camera image.
    """
    packed = pyarray.array("B")
    packed.frombytes(np.ascontiguousarray(values).view(np.uint8).reshape(-1).data)
    return packed
