"""The Trainer's input (components/trainer/inputs.py): the cache holds the Transform graph's own
output, the batches do not depend on the order of the examples on disk, and the memory bound holds."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakeface import features
from fakeface.components.trainer import inputs
from fakeface.pipeline import config as config_lib

SIDE = 96
# 20 training and 10 eval images of 96 x 96 x 3 float32: 3.2 MiB in the cache.
TRAIN, EVAL = 20, 10


def _encoded(rng: np.random.Generator, index: int) -> bytes:
    """JPEGs and PNGs of assorted sizes, some smaller and some larger than SIDE."""
    height, width = rng.integers(40, 200, size=2)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG" if index % 3 == 0 else "JPEG")
    return buffer.getvalue()


def _write_split(uri: str, split: str, examples) -> None:
    os.makedirs(os.path.join(uri, f"Split-{split}"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(uri, f"Split-{split}", "data.gz"), options="GZIP") as writer:
        for data, label in examples:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_BYTES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                features.SOURCE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"S"])),
            })).SerializeToString())


def _examples(uri: str, train, evaluation):
    """(train files, eval files, TFX data accessor) of an Examples artifact holding these splits, in this order."""
    from tfx import v1 as tfx
    from tfx.components.util import examples_utils, tfxio_utils
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    _write_split(uri, "train", train)
    _write_split(uri, "eval", evaluation)
    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    artifact.split_names = '["train", "eval"]'
    examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
    accessor = tfx.components.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([artifact], []),
        record_batch_factory=None, data_view_decode_fn=None)
    return [os.path.join(uri, "Split-train", "*")], [os.path.join(uri, "Split-eval", "*")], accessor


def _config(**trainer):
    config = config_lib.from_dict({"transform": {"image_size": SIDE},
                                   "trainer": dict({"batch_size": 8, "augment_blur_jpeg_probability": 0.5},
                                                   **trainer)})
    return {"trainer": config_lib.to_dict(config)["trainer"], "transform": config_lib.to_dict(config)["transform"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory, build_transform_graph):
    """(examples in order on disk, the same examples in another order, transform output)."""
    root = tmp_path_factory.mktemp("training-input")
    rng = np.random.default_rng(11)
    examples = [(_encoded(rng, i), i % 2) for i in range(TRAIN + EVAL)]
    train, evaluation = examples[:TRAIN], examples[TRAIN:]
    transform_output = build_transform_graph(str(root / "transform"), _config()["transform"], [examples[0][0]])
    permuted = [[split[i] for i in rng.permutation(len(split))] for split in (train, evaluation)]
    return (_examples(str(root / "ordered"), train, evaluation),
            _examples(str(root / "permuted"), *permuted), transform_output)


def _read(examples, transform_output, config):
    train_files, eval_files, accessor = examples
    return inputs.read_splits(train_files, eval_files, accessor, transform_output, config)


def _batches(dataset, count):
    batches = list(dataset.take(count))
    return np.concatenate([x.numpy() for x, _ in batches]), np.concatenate([y.numpy() for _, y in batches])


def test_the_cache_holds_the_transform_graphs_own_output_bit_for_bit(data):
    ordered, _, transform_output = data
    train_files, _, accessor = ordered
    cached = inputs.read_cached(train_files, accessor, transform_output, [])
    raw = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(train_files[0]), compression_type="GZIP")
                    .map(lambda r: tf.io.parse_single_example(r, {
                        features.IMAGE_BYTES: tf.io.FixedLenFeature([], tf.string),
                        features.LABEL: tf.io.FixedLenFeature([], tf.int64)})).batch(TRAIN)))
    expected = transform_output.transform_features_layer()(raw)
    assert cached.images.dtype == tf.float32 and cached.images.shape == (TRAIN, SIDE, SIDE, 3)
    np.testing.assert_array_equal(cached.images.numpy(), expected[features.IMAGE].numpy())
    np.testing.assert_array_equal(cached.labels.numpy().ravel(), raw[features.LABEL].numpy())


def test_batches_do_not_depend_on_the_order_of_the_examples_on_disk(data):
    ordered, permuted, transform_output = data
    config = _config()
    first, second = _read(ordered, transform_output, config), _read(permuted, transform_output, config)
    assert first.summary()["cached"] and second.summary()["cached"]
    steps = 3 * TRAIN // 8  # three epochs, flips and blur+JPEG on
    for a, b in zip(_batches(first.train(), steps), _batches(second.train(), steps)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_batches(first.evaluation(), 2), _batches(second.evaluation(), 2)):
        np.testing.assert_array_equal(a, b)
    other_seed = _read(permuted, transform_output, _config(seed=1))
    assert not np.array_equal(_batches(other_seed.train(), steps)[1], _batches(first.train(), steps)[1]), \
        "the seed decides the shuffle"


def test_every_epoch_holds_each_training_image_once(data):
    ordered, _, transform_output = data
    config = _config(augment_flip=False, augment_blur_jpeg_probability=0.0)
    splits = _read(ordered, transform_output, config)
    images, _ = _batches(splits.train(), 2 * TRAIN // 8)  # two epochs
    cached = sorted(image.tobytes() for image in splits.train_cache.images.numpy())
    for epoch in (images[:TRAIN], images[TRAIN:]):
        assert sorted(image.tobytes() for image in epoch) == cached


def test_cached_and_streamed_input_hold_the_same_images(data):
    ordered, _, transform_output = data
    cached = _read(ordered, transform_output, _config())
    streamed = _read(ordered, transform_output, _config(input_cache_mb=0))
    assert streamed.train_cache is None and not streamed.summary()["cached"]
    a, b = _batches(cached.evaluation(), 2), _batches(streamed.evaluation(), 2)
    assert sorted(zip(a[1].ravel(), (x.tobytes() for x in a[0]))) == \
        sorted(zip(b[1].ravel(), (x.tobytes() for x in b[0])))


def test_splits_larger_than_input_cache_mb_are_streamed(data):
    ordered, _, transform_output = data
    needed = inputs.cache_bytes(TRAIN + EVAL, _config()["transform"])
    assert needed == (TRAIN + EVAL) * SIDE * SIDE * 3 * 4
    fits = _read(ordered, transform_output, _config(input_cache_mb=-(-needed // 2 ** 20)))
    assert fits.summary()["cached"] and fits.summary()["cache_mb"] == round(needed / 2 ** 20, 1)
    assert not _read(ordered, transform_output, _config(input_cache_mb=needed // 2 ** 20)).summary()["cached"]


def test_the_crop_policy_is_streamed(data):
    ordered, _, transform_output = data
    config = _config()
    config["transform"] = dict(config["transform"], input_policy="crop", crop_size=32)
    assert _read(ordered, transform_output, config).train_cache is None


def test_a_negative_cache_size_is_refused():
    with pytest.raises(config_lib.ConfigError, match="input_cache_mb"):
        config_lib.from_dict({"trainer": {"input_cache_mb": -1}})
