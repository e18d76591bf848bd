"""The image contract, and what ingestion records about an image file.

A file is an image if and only if the model's own decoder, TensorFlow's
`decode_image` behind `components/transform/preprocessing.py:decode()`, turns it
into the pixels a viewer would see, within the pixel limit. That one function
decides at ingestion, in the Transform graph, in `fakeface predict` and in
`fakeface classify`; docs/ingestion.md lists the rules it applies:

* taken: JPEG (MPO too: its first frame is a JPEG), PNG, GIF and BMP, the
  formats `decode_image` reads, told apart by their first bytes as TensorFlow
  tells them; grayscale is replicated to RGB, PNG and GIF palettes expanded,
  16-bit samples scaled to 8 bits, alpha and transparency dropped, CMYK
  converted by libjpeg. Animated GIFs and PNGs give their first frame,
  everywhere.
* refused: anything `decode_image` refuses, and what it would misread: BMPs
  with an OS/2 header, with other than 8, 24 or 32 bits per pixel, compressed
  or with non-standard bit fields, and 8-bit BMPs whose palette is not plain
  gray (TensorFlow returns the palette indices, not the colours); images over
  the pixel limit by their header, before any pixel is decoded.

EXIF orientation is not applied, by TensorFlow nor anywhere else: pixels are
used as stored, which is what TF Serving sees; the ingestion report counts the
images that carry an orientation tag.

This module holds the parts that need no TensorFlow: the formats, the limits,
the perceptual hash's bits, and `read_header`, which reads with Pillow what no
pixel decode is needed for. Pillow never admits or refuses a file.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

from PIL import Image

from fakeface import features

# What TensorFlow's decode_image reads, and the first bytes by which it tells
# them apart (tensorflow/core/kernels/image/decode_image_op.cc).
MAGIC_BYTES = (("JPEG", b"\xff\xd8\xff"), ("PNG", b"\x89PNG\r\n\x1a\n"), ("GIF", b"GIF8"), ("BMP", b"BM"))
ACCEPTED_FORMATS = tuple(name for name, _ in MAGIC_BYTES)
# Beyond this many pixels an image is refused from its header, before it is
# decoded, so a decompression bomb costs no memory. 64 Mpx is a 8000x8000 photo.
DEFAULT_MAX_PIXELS = 64_000_000
# Below this many pixels on a side there is nothing to detect.
DEFAULT_MIN_SIDE = 16
_EXIF_ORIENTATION_TAG = 0x0112
# IJG's standard luminance quantization table (quality 50), in natural order.
_IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


class BadImage(ValueError):
    """The bytes are not an image by the contract; str() is the reason."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What Pillow reads from an image's headers without decoding its pixels.

    Descriptive only, for the report and the shortcut guard: a file Pillow
    cannot parse keeps the defaults.
    """

    format: str = ""  # Pillow's name for it, also for formats the model does not take
    mode: str = "unknown"
    # IJG-equivalent quality estimated from the luminance table; 0 if not a
    # JPEG or its tables cannot be read.
    jpeg_quality: int = 0
    # EXIF orientation tag (1 = as stored); 0 when there is none.
    exif_orientation: int = 0
    # Frames of an animation (GIF, APNG) or of an MPO; the decoder takes the first.
    frames: int = 1


def encode_png(image: Image.Image) -> bytes:
    """`image` as PNG for the model to score: lossless, so no new artefacts.

    At zlib level 1: about five times faster to write than Pillow's default
    (6) for 17% more bytes, which matters where every test image is re-encoded
    several times (rotations, down-scaled copies).
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def format_of(data: bytes) -> str:
    """The format decode_image takes `data` for, by its first bytes; "" for none."""
    for name, magic in MAGIC_BYTES:
        if data.startswith(magic):
            return name
    return ""


def resolution_bucket(width: int, height: int) -> str:
    """The features.RESOLUTION_BUCKETS name of the image's shorter side."""
    shorter = min(width, height)
    return [name for name, floor in features.RESOLUTION_BUCKETS if shorter >= floor][-1]


def estimate_jpeg_quality(luminance_table) -> int:
    """The IJG quality whose scaled standard table matches this one's sum."""
    scale = 100.0 * sum(luminance_table) / sum(_IJG_LUMINANCE)
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return max(1, min(100, int(round(quality))))


def read_header(data: bytes) -> Header:
    """The file's mode, JPEG quality, EXIF orientation and frame count, as far as Pillow can tell."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            tables = getattr(image, "quantization", None) or {}
            quality = estimate_jpeg_quality(tables[0]) if 0 in tables else 0
            return Header(format=image.format or "", mode=image.mode, jpeg_quality=quality,
                          exif_orientation=int(image.getexif().get(_EXIF_ORIENTATION_TAG, 0) or 0),
                          frames=int(getattr(image, "n_frames", 1)))
    except Exception:  # pylint: disable=broad-except
        # Descriptive only: the contract is decided by the model's decoder.
        return Header()
