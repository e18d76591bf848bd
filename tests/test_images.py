"""Tests of the image gate (fakeface/images.py)."""

import io

import numpy as np
import pytest
from PIL import Image, features as pil_features

from fakeface import images

# Not square, so a swapped width and height shows.
WIDTH, HEIGHT = 37, 23


def _noise(mode, width=WIDTH, height=HEIGHT):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "RGB":
        return rgb
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16), mode="I;16")
    if mode == "P":
        return rgb.quantize(colors=16)
    return rgb.convert(mode)


def _encode(img, fmt, **kwargs):
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode, fmt", [
    ("RGB", "JPEG"),
    ("L", "JPEG"),
    ("RGB", "PNG"),
    ("RGBA", "PNG"),
    ("L", "PNG"),
    ("I;16", "PNG"),
    ("P", "PNG"),
    ("P", "GIF"),
    ("RGB", "BMP"),
])
def test_accepted_images(mode, fmt):
    data = _encode(_noise(mode), fmt)
    if mode == "I;16":
        assert Image.open(io.BytesIO(data)).mode == "I;16"
    info = images.inspect(data)
    assert (info.format, info.width, info.height) == (fmt, WIDTH, HEIGHT)
    assert info.mode == Image.open(io.BytesIO(data)).mode
    assert (info.jpeg_quality > 0) == (fmt == "JPEG")
    assert len(info.perceptual_hash) == 16


def _rejection(data, **kwargs):
    with pytest.raises(images.BadImage) as e:
        images.inspect(data, **kwargs)
    return str(e.value)


def test_empty_bytes_are_rejected():
    assert "empty" in _rejection(b"")


def test_truncated_jpeg_is_rejected():
    data = _encode(_noise("RGB", 64, 64), "JPEG")
    assert "cannot be decoded" in _rejection(data[: len(data) // 2])


def test_random_bytes_are_rejected():
    assert "not an image" in _rejection(np.random.default_rng(0).bytes(4096))


def test_text_file_is_rejected():
    assert "not an image" in _rejection(b"label,path\nreal,ffhq/00001.png\n")


@pytest.mark.parametrize("fmt", [
    "TIFF",
    pytest.param("WEBP", marks=pytest.mark.skipif(
        not pil_features.check("webp"), reason="this Pillow cannot write WebP")),
])
def test_formats_tensorflow_cannot_decode_are_rejected_by_name(fmt):
    reason = _rejection(_encode(_noise("RGB"), fmt))
    assert f"format {fmt} is not taken" in reason
    assert "JPEG" in reason  # tells the user what is taken


def test_too_many_pixels_is_rejected():
    data = _encode(_noise("RGB", 100, 100), "PNG")
    reason = _rejection(data, max_pixels=5000)
    assert "100x100" in reason
    assert "5000" in reason


def test_pixel_limit_is_inclusive():
    data = _encode(_noise("RGB", 100, 100), "PNG")
    info = images.inspect(data, max_pixels=10_000)
    assert (info.format, info.width, info.height) == ("PNG", 100, 100)


def test_pixel_limit_is_checked_before_decoding():
    """A truncated body fails only if decoded, so the limit must answer first."""
    data = _encode(_noise("RGB", 100, 100), "PNG")
    header_only = data[: len(data) // 2]
    assert "cannot be decoded" in _rejection(header_only)
    assert "over the limit" in _rejection(header_only, max_pixels=5000)


@pytest.mark.parametrize("quality", [40, 75, 92])
def test_jpeg_quality_is_estimated_from_the_quantization_tables(quality):
    assert images.inspect(_encode(_noise("RGB"), "JPEG", quality=quality)).jpeg_quality == quality


def test_animated_images_are_rejected():
    frames = [Image.fromarray(np.full((20, 20), v, np.uint8)).convert("P") for v in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert "animated image with 2 frames" in _rejection(buffer.getvalue())


def test_perceptual_hash_survives_re_encoding_and_resizing():
    smooth = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8) * 2
    image = Image.fromarray(np.stack([smooth, smooth[::-1], smooth.T], axis=-1))
    png = images.inspect(_encode(image, "PNG")).perceptual_hash
    assert images.inspect(_encode(image, "JPEG", quality=80)).perceptual_hash == png
    assert images.inspect(_encode(image.resize((32, 32)), "PNG")).perceptual_hash == png
    other = images.inspect(_encode(image.transpose(Image.FLIP_TOP_BOTTOM), "PNG"))
    assert other.perceptual_hash != png
