"""Checks one encoded image file before it may enter the pipeline.

Ingestion keeps the original bytes; this module only decides whether they are
an image the model can be fed, and reads what the examples record about it.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

from PIL import Image

# Formats that TensorFlow's decode_image (used by Transform and serving) reads.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
# Beyond this many pixels an image is refused before it is decoded, so a
# decompression bomb costs no memory. 64 Mpx is a 8000x8000 photo.
DEFAULT_MAX_PIXELS = 64_000_000


class BadImage(ValueError):
    """The bytes are not an image the pipeline takes; str() is the reason."""


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def inspect(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Fully decodes `data` and returns its format and size, or raises BadImage."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            if fmt not in ACCEPTED_FORMATS:
                raise BadImage(f"format {fmt} is not taken; accepted: {', '.join(ACCEPTED_FORMATS)}")
            width, height = image.size
            if width < 1 or height < 1:
                raise BadImage(f"degenerate size {width}x{height}")
            if width * height > max_pixels:
                raise BadImage(f"{width}x{height} is over the limit of {max_pixels} pixels")
            image.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"decompression bomb: {e}") from e
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"cannot be decoded: {e}") from e
    return ImageInfo(format=fmt, width=width, height=height)
