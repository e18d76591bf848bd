"""preprocessing_fn, the hub backbone path and training-only augmentation, on tiny inputs."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
from PIL import Image

from fakeface import features, sample_data
from fakeface.components.trainer import augmentation, backbones, model as model_lib
from fakeface.components.transform import preprocessing


def _encode(pixels: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_preprocessing_decodes_any_common_image_to_the_configured_size():
    rng = np.random.default_rng(0)
    batch = tf.constant([
        _encode(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), "JPEG", quality=90),
        _encode(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), "PNG"),
        _encode(rng.integers(0, 255, (30, 30), dtype=np.uint8), "PNG"),  # grayscale
        _encode(rng.integers(0, 255, (24, 24, 4), dtype=np.uint8), "PNG"),  # with alpha
        _encode(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8), "BMP"),
    ])
    out = preprocessing.preprocessing_fn(
        {features.IMAGE_BYTES: batch, features.LABEL: tf.constant([0, 1, 0, 1, 0], tf.int64)},
        {"input_policy": "resize", "image_size": 32})
    images = out[features.IMAGE].numpy()
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert out[features.IMAGE_ERROR].numpy().tolist() == [b""] * 5
    np.testing.assert_array_equal(out[features.LABEL].numpy(), [0, 1, 0, 1, 0])


def test_images_already_at_the_model_size_keep_every_pixel():
    """Up-sampling fingerprints live in single pixels; no resampling may blur them."""
    pixels = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    decoded = preprocessing.decode_and_resize(tf.constant([_encode(pixels, "PNG")]), 32)[0].numpy()[0]
    np.testing.assert_allclose(decoded, pixels / 255.0, atol=1e-6)


def _photo(height: int, width: int, seed: int = 0, **save) -> bytes:
    """A sample face, cut to height x width, as a JPEG."""
    side = max(height, width) + max(height, width) % 2
    pixels = sample_data.render_image(sample_data.SOURCES[seed % len(sample_data.SOURCES)], seed, side, seed=seed)
    return _encode(np.ascontiguousarray(pixels[:height, :width]), "JPEG", quality=92, **save)


def test_bad_images_fail_alone_with_a_one_line_reason():
    """TF Serving merges requests into one batch: a bad image must not fail the others."""
    good = _photo(48, 40)
    half_jpeg = _photo(120, 100, seed=1)
    half_jpeg = half_jpeg[:len(half_jpeg) // 2]
    batch = [good, b"\xff\xd8\xff truncated jpeg", b"plain text", half_jpeg, _png_claiming(100_000, 100_000), good]
    images, reasons = preprocessing.decode_and_resize(tf.constant(batch), 32)
    reasons = [r.decode() for r in reasons.numpy()]
    assert reasons == [
        "", "the image header cannot be read", "not a JPEG, PNG, GIF or BMP image",
        "the image data cannot be decoded: corrupt, truncated or of a kind the model does not take",
        "image of 10000000000 pixels by its header, over the limit of 64000000", ""]
    alone, _ = preprocessing.decode_and_resize(tf.constant([good]), 32)
    for index in (0, 5):
        np.testing.assert_array_equal(images[index], alone[0])
    assert not images.numpy()[1:5].any()
    # Every image failing leaves nothing to batch; the answer is still one row each.
    images, reasons = preprocessing.decode_and_resize(tf.constant([b"x", b"y"]), 32)
    assert images.shape == (2, 32, 32, 3) and all(reasons.numpy())


@pytest.mark.parametrize("height, width, ratio", [
    (70, 200, 2), (130, 129, 4), (600, 256, 8), (63, 900, 1), (40, 40, 1)])
def test_a_jpeg_at_least_twice_the_model_size_is_decoded_down_scaled_in_the_dct_domain(height, width, ratio):
    """The largest of libjpeg's 1/2, 1/4, 1/8 that keeps the shorter side at least the model's."""
    data = _photo(height, width)
    image = preprocessing.resize(tf.constant(data), 32).numpy()
    expected = tf.image.resize(tf.image.convert_image_dtype(
        tf.io.decode_jpeg(data, channels=3, ratio=ratio), tf.float32), [32, 32], antialias=True)
    np.testing.assert_allclose(image, tf.clip_by_value(expected, 0.0, 1.0), atol=1e-6)
    full = tf.clip_by_value(tf.image.resize(preprocessing.decode(tf.constant(data)), [32, 32], antialias=True), 0, 1)
    # Another low-pass filter than resize's, so close, not equal: the same picture.
    assert np.abs(image - full.numpy()).mean() < 0.03, "close to resizing the fully decoded image"


def test_libjpeg_refuses_the_same_jpegs_at_every_ratio():
    """The DCT-domain path accepts exactly the JPEGs a full decode does."""
    rng = np.random.default_rng(7)
    accepted = []
    for progressive in (False, True):
        base = _photo(160, 136, seed=2, progressive=progressive)
        hostile = [base[:size] for size in (200, 600, len(base) // 2, len(base) - 2)]
        for _ in range(12):
            data = bytearray(base)
            for position in rng.integers(0, len(data), int(rng.integers(1, 6))):
                data[position] = int(rng.integers(0, 256))
            hostile.append(bytes(data))
        _, full = preprocessing.decode_and_resize(tf.constant(hostile), 160)  # no down-scaling
        _, scaled = preprocessing.decode_and_resize(tf.constant(hostile), 16)  # 1/8
        np.testing.assert_array_equal(full.numpy() == b"", scaled.numpy() == b"")
        accepted.extend(full.numpy() == b"")
    assert 0 < sum(accepted) < len(accepted), "the hostile files include accepted and refused ones"


def _png_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_header_pixel_count_matches_the_image(fmt):
    pixels = np.random.default_rng(5).integers(0, 255, (23, 37, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert("P") if fmt == "GIF" else image).save(buffer, format=fmt)
    data = buffer.getvalue()
    assert int(preprocessing.header_pixels(tf.constant(data))) == 23 * 37


def test_a_file_claiming_a_huge_image_is_refused_before_decoding():
    """A decompression bomb must fail, not take the server's memory."""
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than 64000000 pixels"):
        preprocessing.decode(tf.constant(_png_claiming(100_000, 100_000)))


@pytest.fixture(scope="module")
def hub_handle(tmp_path_factory):
    return backbones.export_small_cnn(str(tmp_path_factory.mktemp("hub") / "small-cnn"), seed=0)


def test_backbone_loads_through_tf_hub_and_fine_tunes(hub_handle):
    layer = hub.KerasLayer(hub_handle, trainable=True)
    embedding = layer(tf.zeros([2, 48, 40, 3]))  # fully convolutional: any input size
    assert embedding.shape[0] == 2 and embedding.shape[1] > 0
    assert layer.trainable_weights

    model = model_lib.build_model(backbones.SMALL_CNN, hub_handle, image_size=32, trainable=True,
                                  dropout=0.0, optimizer=tf.keras.optimizers.Adam(0.01))
    images = np.random.default_rng(2).random((8, 32, 32, 3)).astype(np.float32)
    labels = np.array([[0], [1]] * 4, np.float32)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(images, labels, epochs=1, verbose=0)
    changed = [not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights)]
    assert all(changed), "every layer, the backbone's included, must learn"


def test_model_with_hub_backbone_saves_and_reloads(hub_handle, tmp_path):
    model = model_lib.build_model(backbones.SMALL_CNN, hub_handle, image_size=32, trainable=True,
                                  dropout=0.0, optimizer=tf.keras.optimizers.Adam(0.01))
    images = np.random.default_rng(3).random((4, 32, 32, 3)).astype(np.float32)
    model.save(str(tmp_path / "model"), save_format="tf")
    reloaded = tf.keras.models.load_model(str(tmp_path / "model"))
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-5)


NO_AUGMENTATION = {"seed": 0, "augment_flip": False, "augment_rotation_degrees": 0.0,
                   "augment_shift": 0.0, "augment_zoom": 0.0}


def _augment(trainer_config, images, index=0):
    return augmentation.make_geometric(trainer_config)(tf.constant(index, tf.int64), images).numpy()


def test_flips_mirror_about_half_of_the_images_exactly():
    images = tf.constant(np.random.default_rng(4).random((16, 8, 8, 3)).astype(np.float32))
    flips = dict(NO_AUGMENTATION, augment_flip=True)
    augmented = _augment(flips, images)
    flipped = [np.array_equal(a, i[:, ::-1]) for a, i in zip(augmented, images.numpy())]
    unchanged = [np.array_equal(a, i) for a, i in zip(augmented, images.numpy())]
    assert all(f or u for f, u in zip(flipped, unchanged)), "mirrored exactly, never resampled"
    assert 0 < sum(flipped) < 16, "about half of the images are mirrored"
    np.testing.assert_array_equal(_augment(flips, images), augmented)  # repeatable
    assert not np.array_equal(_augment(flips, images, index=1), augmented)  # new draws per batch
    assert augmentation.make_geometric(NO_AUGMENTATION) is None


@pytest.mark.parametrize("knob, value", [
    ("augment_rotation_degrees", 45.0), ("augment_shift", 0.15), ("augment_zoom", 0.5)])
def test_the_notes_geometric_augmentations_change_every_image(knob, value):
    images = tf.constant(np.random.default_rng(6).random((8, 24, 24, 3)).astype(np.float32))
    augmented = _augment(dict(NO_AUGMENTATION, **{knob: value}), images)
    assert augmented.shape == images.shape
    assert sum(not np.allclose(a, i) for a, i in zip(augmented, images.numpy())) >= 6
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0


def test_the_notes_policy_is_one_resampling_that_keeps_content_in_place():
    """A point at the centre stays there under zoom and rotation (about the centre) without shifts."""
    image = np.zeros((1, 25, 25, 3), np.float32)
    image[0, 10:15, 10:15] = 1.0
    policy = dict(NO_AUGMENTATION, augment_flip=True, augment_rotation_degrees=45.0, augment_zoom=0.5)
    for index in range(5):
        augmented = _augment(policy, tf.constant(image), index)[0, ..., 0]
        assert augmented[12, 12] == pytest.approx(1.0)
        assert augmented[0, 0] == 0.0 and 0 < augmented.sum()


@pytest.mark.parametrize("height, width, size", [
    (512, 512, 299), (300, 300, 299), (1000, 700, 299), (64, 64, 299), (299, 299, 299), (301, 2000, 299),
    (1, 37, 32), (33, 1, 32), (97, 45, 64), (64, 64, 64), (7, 640, 64)])
def test_the_resize_is_tensorflows_antialiased_bilinear(height, width, size):
    image = np.random.default_rng(height * width).random((height, width, 3)).astype(np.float32)
    expected = tf.image.resize(image, [size, size], antialias=True).numpy()
    resized = preprocessing.resize_antialiased(tf.constant(image), size).numpy()
    assert resized.shape == (size, size, 3)
    np.testing.assert_allclose(resized, expected, atol=1e-5)
