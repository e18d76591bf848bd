"""What ingestion records about an image (fakeface/images.py) and its limits (inspection.py)."""

import io

import numpy as np
import pytest
from PIL import Image

from fakeface import images
from fakeface.components.image_example_gen import inspection
from fakeface.components.image_example_gen.records import FileRecord, FileRef, Quarantined
from fakeface.pipeline.config import IngestConfig

# Not square, so a swapped width and height shows.
WIDTH, HEIGHT = 37, 23


def _noise(width=WIDTH, height=HEIGHT, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _encode(img, fmt, **kwargs):
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _inspect(tmp_path, data, **config):
    path = tmp_path / "file"
    path.write_bytes(data)
    [result] = inspection.inspect([FileRef("S", str(path), "file", len(data))], IngestConfig(**config))
    return result


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("BMP", "RGB"),
                                       ("MPO", "RGB"), ("TIFF", "RGB")])
def test_the_format_is_the_one_the_models_decoder_takes_the_bytes_for(fmt, mode):
    image = _noise().convert(mode)
    data = _encode(image, fmt, **({"save_all": True, "append_images": [_noise(seed=1)]} if fmt == "MPO" else {}))
    assert images.format_of(data) == {"MPO": "JPEG", "TIFF": ""}.get(fmt, fmt)
    assert images.read_header(data).format == fmt


@pytest.mark.parametrize("quality", [40, 75, 92])
def test_jpeg_quality_is_estimated_from_the_quantization_tables(quality):
    assert images.read_header(_encode(_noise(), "JPEG", quality=quality)).jpeg_quality == quality


def test_the_header_tells_orientation_and_frames():
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = images.read_header(_encode(_noise(), "JPEG", exif=exif.tobytes()))
    assert (rotated.exif_orientation, rotated.frames, rotated.mode) == (6, 1, "RGB")
    frames = [_noise(seed=s).convert("P") for s in range(3)]
    assert images.read_header(_encode(frames[0], "GIF", save_all=True, append_images=frames[1:])).frames == 3
    assert images.read_header(b"\xff\xd8\xff garbage") == images.Header()


def test_ingestion_hashes_as_the_core_does_and_copies_stay_within_reach(tmp_path):
    import tensorflow as tf

    from fakeface import near_duplicates

    smooth = np.add.outer(np.arange(96), np.arange(80)).astype(np.uint8) * 2
    image = Image.fromarray(np.stack([smooth, smooth[::-1], smooth[:, ::-1]], axis=-1))

    def perceptual_hash(data):
        return _inspect(tmp_path, data).perceptual_hash

    for data in (_encode(image, "PNG"), _encode(image, "JPEG", quality=80)):
        # The decoding graph's thumbnail is the core's, up to Pillow's rounding to 8 bits.
        pixels = tf.io.decode_image(data, channels=3).numpy()
        assert near_duplicates.hamming_distance(perceptual_hash(data), near_duplicates.perceptual_hash(pixels)) <= 1
    png = perceptual_hash(_encode(image, "PNG"))
    bits = IngestConfig().near_duplicate_bits
    assert near_duplicates.hamming_distance(perceptual_hash(_encode(image, "JPEG", quality=80)), png) <= bits
    assert near_duplicates.hamming_distance(perceptual_hash(_encode(image.resize((40, 48)), "PNG")), png) <= bits
    assert near_duplicates.hamming_distance(
        perceptual_hash(_encode(image.transpose(Image.FLIP_TOP_BOTTOM), "PNG")), png) > bits


def test_the_pixel_limit_is_inclusive_and_checked_before_decoding(tmp_path):
    data = _encode(_noise(100, 100), "PNG")
    record = _inspect(tmp_path, data, max_pixels=10_000)
    assert isinstance(record, FileRecord) and (record.width, record.height) == (100, 100)
    header_only = data[: len(data) // 2]  # a truncated body fails only if decoded
    assert "more than 5000 pixels by its header" in _inspect(tmp_path, header_only, max_pixels=5000).reason
    assert "more than" not in _inspect(tmp_path, header_only).reason


def test_a_record_describes_the_file(tmp_path):
    record = _inspect(tmp_path, _encode(_noise(), "JPEG", quality=75))
    assert (record.format, record.width, record.height, record.jpeg_quality) == ("JPEG", WIDTH, HEIGHT, 75)
    assert len(record.perceptual_hash) == 16 and len(record.content_sha256) == 64
    reencoded = _inspect(tmp_path, _encode(_noise(), "PNG"), reencode_jpeg_quality=85)
    assert (reencoded.format, reencoded.jpeg_quality) == ("JPEG", 85)
    tiny = _inspect(tmp_path, _encode(_noise(8, 40), "PNG"))
    assert isinstance(tiny, Quarantined) and tiny.reason == "8x40 has a side under 16 pixels (ingest.min_side)"
