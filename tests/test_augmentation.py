"""Wang et al.'s blur + JPEG augmentation in the training input (components/trainer/augmentation.py)."""

import numpy as np
import pytest
import tensorflow as tf

from fakeface.components.trainer import augmentation
from fakeface.pipeline import config as config_lib


def _trainer(**overrides):
    return config_lib.to_dict(config_lib.from_dict({"trainer": overrides}))["trainer"]


def _images(count=16, size=32, seed=0):
    # Smooth content plus fine detail: blur and JPEG both have something to take away.
    rng = np.random.default_rng(seed)
    base = np.kron(rng.random((count, size // 8, size // 8, 3)), np.ones((1, 8, 8, 1)))
    return np.clip(base + 0.2 * rng.standard_normal((count, size, size, 3)), 0, 1).astype(np.float32)


def _augment(trainer, images):
    """The way input_fn applies it: per image, keyed by the image's index in the stream."""
    blur_jpeg = augmentation.make_blur_jpeg(trainer)
    dataset = tf.data.Dataset.from_tensor_slices(images).enumerate().map(blur_jpeg).batch(len(images))
    return next(iter(dataset)).numpy()


def _high_frequency_energy(images):
    return float(np.mean(np.diff(images, axis=1) ** 2) + np.mean(np.diff(images, axis=2) ** 2))


def test_off_by_default_and_at_probability_zero():
    assert augmentation.make_blur_jpeg(_trainer()) is None
    assert _trainer()["augment_blur_jpeg_probability"] == 0.0


def test_probability_one_changes_every_image_and_is_repeatable_for_a_seed():
    images = _images()
    trainer = _trainer(augment_blur_jpeg_probability=1.0)
    first, again = _augment(trainer, images), _augment(trainer, images)
    assert first.shape == images.shape and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert all(not np.allclose(a, i, atol=1e-3) for a, i in zip(first, images))
    np.testing.assert_array_equal(first, again)
    other_seed = _augment(_trainer(augment_blur_jpeg_probability=1.0, seed=7), images)
    assert not np.array_equal(first, other_seed)


def test_a_probability_between_leaves_some_images_untouched():
    images = _images(count=32)
    augmented = _augment(_trainer(augment_blur_jpeg_probability=0.3), images)
    untouched = sum(np.array_equal(a, i) for a, i in zip(augmented, images))
    assert 0 < untouched < 32  # each image is spared both with probability 0.49


def test_strong_blur_removes_high_frequencies():
    images = tf.constant(_images(count=1)[0])
    blurred = augmentation.gaussian_blur(images, tf.constant(3.0), radius=9).numpy()
    assert blurred.shape == images.shape
    assert _high_frequency_energy(blurred[None]) < 0.1 * _high_frequency_energy(images.numpy()[None])
    # The mean brightness survives, borders included (mirrored, not zero-padded).
    assert float(blurred.mean()) == pytest.approx(float(images.numpy().mean()), abs=0.01)


def test_zero_sigma_is_the_identity():
    image = tf.constant(_images(count=1)[0])
    np.testing.assert_allclose(augmentation.gaussian_blur(image, tf.constant(0.0), radius=9).numpy(),
                               image.numpy(), atol=1e-6)


def test_jpeg_alone_at_low_quality_adds_compression_error():
    images = _images(count=8)
    trainer = _trainer(augment_blur_jpeg_probability=1.0, augment_blur_sigma_max=0.0,
                       augment_jpeg_quality_min=30, augment_jpeg_quality_max=30)
    augmented = _augment(trainer, images)
    error = np.abs(augmented - images).mean()
    assert 0.01 < error < 0.2


@pytest.mark.parametrize("trainer", [
    {"augment_blur_jpeg_probability": 1.5},
    {"augment_blur_sigma_max": 6.0},
    {"augment_jpeg_quality_min": 90, "augment_jpeg_quality_max": 80},
])
def test_bad_settings_are_refused(trainer):
    with pytest.raises(config_lib.ConfigError, match="augment_blur_jpeg"):
        config_lib.from_dict({"trainer": trainer})


@pytest.mark.parametrize("sigma", [0.5, 1.7, 3.0])
def test_blur_is_the_mirrored_gaussian_of_its_definition(sigma):
    image = np.random.default_rng(3).random((23, 37, 3)).astype(np.float32)
    radius = 9
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-taps ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="symmetric")
    rows = sum(w * padded[:, k:k + 37] for k, w in enumerate(weights))
    expected = sum(w * rows[k:k + 23] for k, w in enumerate(weights))
    blurred = augmentation.gaussian_blur(tf.constant(image), tf.constant(sigma), radius).numpy()
    np.testing.assert_allclose(blurred, expected, atol=1e-5)
