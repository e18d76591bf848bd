"""How a file was saved, read from its bytes (fakeface/file_attributes.py), and metadata stripping."""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageCms, PngImagePlugin

from fakeface import file_attributes

WIDTH, HEIGHT = 70, 50  # not square, so swapped sides show


def _picture(seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    # Smooth enough that JPEG settings change the size of the file as they would for a photo.
    coarse = rng.integers(0, 256, (HEIGHT // 5, WIDTH // 5, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC)
    return image if mode == "RGB" else image.convert(mode)


def _encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _exif():
    exif = Image.Exif()
    exif[0x0110] = "Pixel 7"  # camera model
    return exif.tobytes()


_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _png_text():
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "generator v2")
    info.add_itxt("Description", "a face", zip=True)
    return info


def _decoded(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


@pytest.mark.parametrize("quality, subsampling, name", [
    (50, "4:2:0", "4:2:0"), (75, "4:2:0", "4:2:0"), (90, "4:2:2", "4:2:2"), (95, "4:4:4", "4:4:4"),
    (98, "4:4:4", "4:4:4")])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_settings_are_read_from_the_header(quality, subsampling, name, progressive):
    data = _encode(_picture(), "JPEG", quality=quality, subsampling=subsampling, progressive=progressive)
    attributes = file_attributes.read(data)
    assert (attributes.format, attributes.width, attributes.height) == ("JPEG", WIDTH, HEIGHT)
    assert attributes.jpeg_quality == quality
    assert attributes.chroma_subsampling == name
    assert attributes.progressive == progressive
    assert attributes.bytes_per_pixel == pytest.approx(len(data) / (WIDTH * HEIGHT))
    assert attributes.resolution_bucket == "under-256"
    assert not (attributes.exif or attributes.icc_profile or attributes.jpeg_comment or attributes.png_text)


def test_grayscale_and_cmyk_jpegs_name_their_components():
    assert file_attributes.read(_encode(_picture(mode="L"), "JPEG")).chroma_subsampling == "grayscale"
    assert file_attributes.read(_encode(_picture(mode="CMYK"), "JPEG")).chroma_subsampling == "4 components"


def _interlaced_png_header(data):
    """The same PNG with IHDR's interlace flag set (and its CRC fixed): enough for a header reader."""
    start = 8
    length = struct.unpack(">I", data[start:start + 4])[0]
    body = bytearray(data[start + 4:start + 8 + length])
    body[-1] = 1
    return data[:start + 4] + bytes(body) + struct.pack(">I", zlib.crc32(bytes(body))) + data[start + 12 + length:]


def test_png_gif_and_bmp_headers():
    png = _encode(_picture(), "PNG")
    attributes = file_attributes.read(png)
    assert (attributes.format, attributes.width, attributes.height, attributes.progressive) == (
        "PNG", WIDTH, HEIGHT, False)
    assert (attributes.jpeg_quality, attributes.chroma_subsampling) == (0, file_attributes.NOT_JPEG)
    assert file_attributes.read(_interlaced_png_header(png)).progressive
    for interlace in (False, True):
        gif = file_attributes.read(_encode(_picture(mode="P"), "GIF", interlace=interlace))
        assert (gif.format, gif.width, gif.height, gif.progressive) == ("GIF", WIDTH, HEIGHT, interlace)
    bmp = file_attributes.read(_encode(_picture(), "BMP"))
    assert (bmp.format, bmp.width, bmp.height) == ("BMP", WIDTH, HEIGHT)
    big = file_attributes.read(_encode(Image.new("RGB", (1200, 600)), "PNG"))
    assert big.resolution_bucket == "512-1023"


JPEG_WITH_METADATA = dict(exif=_exif(), icc_profile=_ICC, comment=b"saved by a camera app")


def test_metadata_is_seen_in_jpeg_and_png():
    jpeg = file_attributes.read(_encode(_picture(), "JPEG", **JPEG_WITH_METADATA))
    assert (jpeg.exif, jpeg.icc_profile, jpeg.jpeg_comment, jpeg.png_text) == (True, True, True, False)
    only_exif = file_attributes.read(_encode(_picture(), "JPEG", exif=_exif()))
    assert (only_exif.exif, only_exif.icc_profile, only_exif.jpeg_comment) == (True, False, False)
    png = file_attributes.read(_encode(_picture(), "PNG", pnginfo=_png_text(), icc_profile=_ICC, exif=_exif()))
    assert (png.exif, png.icc_profile, png.jpeg_comment, png.png_text) == (True, True, False, True)


@pytest.mark.parametrize("fmt, kwargs", [
    ("JPEG", JPEG_WITH_METADATA),
    ("JPEG", dict(JPEG_WITH_METADATA, progressive=True, quality=97, subsampling="4:4:4")),
    ("PNG", dict(pnginfo=_png_text(), icc_profile=_ICC, exif=_exif())),
])
def test_stripping_removes_metadata_and_keeps_the_pixels_byte_for_byte(fmt, kwargs):
    data = _encode(_picture(), fmt, **kwargs)
    stripped = file_attributes.strip_metadata(data)
    before, after = file_attributes.read(data), file_attributes.read(stripped)
    assert not (after.exif or after.icc_profile or after.jpeg_comment or after.png_text)
    assert len(stripped) < len(data)
    # Everything but the metadata is as it was: no re-encoding.
    same = ("format", "width", "height", "jpeg_quality", "chroma_subsampling", "progressive")
    assert [getattr(after, a) for a in same] == [getattr(before, a) for a in same]
    np.testing.assert_array_equal(_decoded(stripped), _decoded(data))
    assert file_attributes.strip_metadata(stripped) == stripped


def test_files_without_metadata_and_other_formats_come_back_unchanged():
    for data in (_encode(_picture(), "JPEG"), _encode(_picture(), "PNG"),
                 _encode(_picture(mode="P"), "GIF", comment=b"x"), _encode(_picture(), "BMP")):
        assert file_attributes.strip_metadata(data) == data


def test_bytes_after_the_end_of_a_jpeg_are_kept():
    data = _encode(_picture(), "JPEG", exif=_exif()) + b"trailing bytes of a second frame"
    stripped = file_attributes.strip_metadata(data)
    assert stripped.endswith(b"trailing bytes of a second frame")
    assert not file_attributes.read(stripped).exif


@pytest.mark.parametrize("data, reason", [
    (b"", "not a JPEG, PNG, GIF or BMP"),
    (b"label,path\nreal,a.png\n", "not a JPEG, PNG, GIF or BMP"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "runs past the end"),
    (b"\x89PNG\r\n\x1a\n", "truncated before IEND"),
    (b"GIF89a\x46\x00", "GIF: header truncated"),
    (b"BM\x00\x00", "BMP: header truncated"),
])
def test_unreadable_headers_say_why(data, reason):
    with pytest.raises(file_attributes.HeaderError, match=reason):
        file_attributes.read(data)


def test_damaged_files_raise_header_errors_only():
    """Truncated files and files with bytes overwritten: a HeaderError with a reason, or attributes."""
    rng = np.random.default_rng(7)
    originals = [_encode(_picture(1), "JPEG", **JPEG_WITH_METADATA), _encode(_picture(2), "JPEG", progressive=True),
                 _encode(_picture(3), "PNG", pnginfo=_png_text()), _encode(_picture(4, "P"), "GIF"),
                 _encode(_picture(5), "BMP")]
    outcomes = {"read": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(originals[rng.integers(len(originals))])
        if rng.random() < 0.5:
            data = data[:rng.integers(0, len(data))]
        else:
            for position in rng.integers(0, min(len(data), 400), rng.integers(1, 6)):
                data[position] = rng.integers(0, 256)
        for function in (file_attributes.read, file_attributes.strip_metadata):
            try:
                function(bytes(data))
                outcomes["read"] += 1
            except file_attributes.HeaderError as e:
                assert str(e)
                outcomes["refused"] += 1
    assert outcomes["read"] and outcomes["refused"]


def _scan_end_by_the_standard(data, pos):
    """ITU T.81 B.1.1.5, byte by byte: 0xFF00 is a stuffed byte, 0xFFD0-D7 a restart, 0xFFFF fill."""
    while pos + 1 < len(data):
        if data[pos] == 0xFF and data[pos + 1] not in (0x00, *range(0xD0, 0xD8), 0xFF):
            return pos
        pos += 1
    return None


def test_a_scan_ends_at_its_first_real_marker():
    """Scans with restart markers and fill bytes, whole, cut short and with bytes of 0xFF sown in."""
    rng = np.random.default_rng(11)
    scans = [b"\x12\xff\x00\x34\xff\xd3\x56\xff\xff\xff\xd9",
             _encode(_picture(6), "JPEG", quality=95),
             _encode(_picture(7), "JPEG", progressive=True)]
    for _ in range(300):
        data = bytearray(scans[rng.integers(len(scans))])
        for position in rng.integers(0, len(data), rng.integers(0, 8)):
            data[position] = rng.choice([0xFF, 0x00, 0xD0, 0xD7, 0xD9, int(rng.integers(256))])
        data = bytes(data[:rng.integers(1, len(data) + 1)])
        start = int(rng.integers(0, len(data)))
        expected = _scan_end_by_the_standard(data, start)
        if expected is None:
            with pytest.raises(file_attributes.HeaderError, match="truncated"):
                file_attributes._entropy_end(data, start)  # pylint: disable=protected-access
        else:
            assert file_attributes._entropy_end(data, start) == expected  # pylint: disable=protected-access
