"""The "crop" input policy: native-resolution crops in training, tiles scored and averaged at serving."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakeface import features
from fakeface.components.trainer import backbones, inputs, model as model_lib
from fakeface.components.transform import preprocessing
from fakeface.pipeline import config as config_lib

CROP = 24


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _coordinates(height: int, width: int) -> np.ndarray:
    """An image whose red and green channels say where each pixel is: (row, column)."""
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, columns, np.full_like(rows, 200)], axis=-1).astype(np.uint8)


def _custom_config(**overrides):
    data = {"transform": {"input_policy": "crop", "crop_size": CROP, "crop_tiles_per_side": 2},
            "trainer": {"batch_size": 4, "augment_flip": False}}
    for section, values in overrides.items():
        data[section].update(values)
    config = config_lib.from_dict(data)
    return {"trainer": config_lib.to_dict(config)["trainer"], "transform": config_lib.to_dict(config)["transform"]}


@pytest.mark.parametrize("tiles_per_side, expected_corners", [
    (1, [(18, 8)]),  # centred: ((60 - 24) // 2, (40 - 24) // 2)
    (2, [(0, 0), (0, 16), (36, 0), (36, 16)]),  # corner to corner
    (3, [(0, 0), (0, 8), (0, 16), (18, 0), (18, 8), (18, 16), (36, 0), (36, 8), (36, 16)]),
])
def test_tiles_cover_the_image_from_corner_to_corner_at_native_resolution(tiles_per_side, expected_corners):
    tiles, _ = preprocessing.decode_and_tile(tf.constant([_png(_coordinates(60, 40))]), CROP, tiles_per_side)
    assert tiles.shape == (1, tiles_per_side ** 2, CROP, CROP, 3)
    for tile, (top, left) in zip(tiles.numpy()[0], expected_corners):
        np.testing.assert_allclose(tile * 255, _coordinates(60, 40)[top:top + CROP, left:left + CROP], atol=1e-3)


def test_images_smaller_than_the_crop_are_padded_not_enlarged():
    pixels = _coordinates(16, 20)
    tile = preprocessing.decode_and_tile(tf.constant([_png(pixels)]), CROP, 1)[0].numpy()[0, 0] * 255
    np.testing.assert_allclose(tile[4:20, 2:22], pixels, atol=1e-3)
    assert tile[:4].max() == 0 and tile[:, :2].max() == 0


def test_training_crops_are_windows_of_the_decoded_image():
    pixels = _coordinates(60, 40)
    decoded = preprocessing.decode(tf.constant(_png(pixels)))
    corners = set()
    for index in range(12):
        crop = inputs.random_crop(tf.constant(index, tf.int64), decoded, CROP, seed=0).numpy() * 255
        top, left = int(round(crop[0, 0, 0])), int(round(crop[0, 0, 1]))
        np.testing.assert_allclose(crop, pixels[top:top + CROP, left:left + CROP], atol=1e-3)
        again = inputs.random_crop(tf.constant(index, tf.int64), decoded, CROP, seed=0).numpy() * 255
        np.testing.assert_array_equal(crop, again)
        corners.add((top, left))
    assert len(corners) > 6, "crops are drawn anywhere in the image"


SIZES = [(60, 40), (30, 50), (24, 24), (41, 33), (70, 26), (50, 50)]


@pytest.fixture(scope="module")
def crop_setup(tmp_path_factory, build_transform_graph):
    """(custom config, transform output, encoded images, labels) under the crop policy."""
    root = tmp_path_factory.mktemp("crop")
    rng = np.random.default_rng(0)
    images = [_png(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]
    config = _custom_config()
    transform_output = build_transform_graph(str(root), config["transform"], images[:2])
    return config, transform_output, images, np.arange(len(images)) % 2


class _FakeDataAccessor:
    """Raw examples in memory, batched and repeated as TFX's tf_dataset_factory would."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def tf_dataset_factory(self, file_pattern, options, schema):
        dataset = tf.data.Dataset.from_tensor_slices(
            {features.IMAGE_BYTES: tf.constant(self.images), features.LABEL: tf.constant(self.labels, tf.int64)})
        return dataset.repeat(options.num_epochs).batch(options.batch_size)


def test_training_input_is_random_native_crops_and_evaluation_is_every_tile(crop_setup):
    config, transform_output, images, labels = crop_setup
    accessor = _FakeDataAccessor(images, labels)
    train = inputs.input_fn([], accessor, transform_output, 4, True, config)
    batch, batch_labels = next(iter(train))
    assert batch.shape == (4, CROP, CROP, 3) and batch_labels.shape == (4, 1)
    for crop, encoded in zip(batch.numpy(), images):
        decoded = preprocessing.decode(tf.constant(encoded)).numpy()
        windows = np.lib.stride_tricks.sliding_window_view(decoded, (CROP, CROP, 3))[..., 0, :, :, :]
        assert np.any(np.all(np.abs(windows - crop) < 1e-6, axis=(-3, -2, -1))), \
            "a training crop is a window of the decoded image, never resampled"

    evaluation = list(inputs.input_fn([], accessor, transform_output, 4, False, config))
    eval_images = np.concatenate([x.numpy() for x, _ in evaluation])
    eval_labels = np.concatenate([y.numpy() for _, y in evaluation]).ravel()
    assert eval_images.shape == (len(images) * 4, CROP, CROP, 3)
    np.testing.assert_array_equal(eval_labels, np.repeat(labels, 4))
    first_tiles = preprocessing.decode_and_tile(tf.constant(images[:1]), CROP, 2)[0].numpy()[0]
    np.testing.assert_allclose(eval_images[:4], first_tiles, atol=1e-6)


def test_blur_jpeg_applies_to_crops_in_training(crop_setup):
    config, transform_output, images, labels = crop_setup
    config = dict(config, trainer=dict(config["trainer"], augment_blur_jpeg_probability=1.0))
    accessor = _FakeDataAccessor(images, labels)
    batch, _ = next(iter(inputs.input_fn([], accessor, transform_output, 4, True, config)))
    assert batch.shape == (4, CROP, CROP, 3)
    decoded = preprocessing.decode(tf.constant(images[0])).numpy()
    windows = np.lib.stride_tricks.sliding_window_view(decoded, (CROP, CROP, 3))[..., 0, :, :, :]
    assert not np.any(np.all(np.abs(windows - batch.numpy()[0]) < 1e-6, axis=(-3, -2, -1)))


@pytest.fixture(scope="module")
def served(crop_setup, tmp_path_factory):
    """(Keras model, serving_default) of a small-cnn under the crop policy, as run_fn exports it."""
    config, transform_output, _, _ = crop_setup
    handle = backbones.export_small_cnn(str(tmp_path_factory.mktemp("hub") / "small-cnn"), seed=0)
    model = model_lib.build_model(backbones.SMALL_CNN, handle, CROP, trainable=False, dropout=0.0,
                                  optimizer=tf.keras.optimizers.Adam(1e-3))
    signatures = model_lib.serving_signatures(model, transform_output, 0.5, "test")
    export = str(tmp_path_factory.mktemp("serving") / "1")
    model.save(export, save_format="tf", signatures=signatures, include_optimizer=False)
    return model, tf.saved_model.load(export).signatures["serving_default"]


def test_serving_scores_images_of_different_sizes_by_the_mean_of_their_tiles(crop_setup, served):
    _, _, images, _ = crop_setup
    model, serving_default = served
    scores = serving_default(image_bytes=tf.constant(images))[features.FAKE_PROBABILITY].numpy()
    assert scores.shape == (len(images),)
    tiles, _ = preprocessing.decode_and_tile(tf.constant(images), CROP, 2)
    per_tile = model(tf.reshape(tiles, [-1, CROP, CROP, 3]), training=False).numpy().reshape(len(images), 4)
    np.testing.assert_allclose(scores, per_tile.mean(axis=1), rtol=1e-5)
    assert len(set(np.round(per_tile[0], 6))) > 1, "the tiles are scored separately"


def test_serving_is_deterministic_for_identical_bytes(crop_setup, served):
    _, _, images, _ = crop_setup
    _, serving_default = served
    scores = [serving_default(image_bytes=tf.constant([images[0], images[3], images[0]]))
              [features.FAKE_PROBABILITY].numpy() for _ in range(3)]
    assert scores[0][0] == scores[0][2]
    for again in scores[1:]:
        np.testing.assert_array_equal(again, scores[0])


@pytest.mark.parametrize("transform, message", [
    ({"input_policy": "tile"}, "input_policy"),
    ({"crop_size": 8}, "crop_size"),
    ({"crop_tiles_per_side": 0}, "crop_tiles_per_side"),
])
def test_bad_input_policy_settings_are_refused(transform, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.from_dict({"transform": transform})
