"""The Trainer's input: raw examples through the Transform graph into batches, augmented in training only.

A split reaches the model one of two ways, with the same pixels either way:

- cached: under the "resize" input policy, when the train and eval splits
  together fit in trainer.input_cache_mb, each split is read and run through
  the Transform graph once, and its float32 output is kept in memory. Every
  epoch is then a seeded shuffle of the cache, taken in content-hash order, so
  the batches do not depend on the order of the examples on disk, which
  ingestion does not promise.
- streamed: otherwise every epoch reads and transforms the examples again, in
  the order on disk, through a seeded shuffle buffer.

Augmentation runs after either, on the transformed images.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import logging
import os
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from fakeface import features
from fakeface.components.trainer import augmentation
from fakeface.components.transform import preprocessing
from fakeface.pipeline import config as config_lib

_AUTOTUNE = tf.data.AUTOTUNE
# The Transform graph decodes a batch one image after another: small batches
# spread the cache's decoding over every core.
_CACHE_FILL_BATCH = 8
_FLOAT32_BYTES = 4


@dataclasses.dataclass
class CachedSplit:
    """A split's transformed images in memory, as read, and the order to take them in."""

    images: tf.Tensor  # [examples, side, side, 3] float32: the Transform graph's output
    labels: tf.Tensor  # [examples, 1] int64
    order: tf.Tensor  # [examples] int64: positions in (content hash, label) order

    @property
    def nbytes(self) -> int:
        return int(tf.size(self.images)) * _FLOAT32_BYTES


@dataclasses.dataclass
class Splits:
    """The train and eval splits as run_fn reads them; both cached, or both streamed."""

    train_files: List[str]
    eval_files: List[str]
    data_accessor: tfx.components.DataAccessor
    tf_transform_output: tft.TFTransformOutput
    config: Dict[str, Any]
    train_labels: Dict[int, int]  # training examples per label
    eval_examples: int
    train_cache: Optional[CachedSplit] = None
    eval_cache: Optional[CachedSplit] = None

    def train(self) -> tf.data.Dataset:
        return input_fn(self.train_files, self.data_accessor, self.tf_transform_output,
                        int(self.config["trainer"]["batch_size"]), True, self.config, cached=self.train_cache)

    def evaluation(self, per_image: bool = False) -> tf.data.Dataset:
        return input_fn(self.eval_files, self.data_accessor, self.tf_transform_output,
                        int(self.config["trainer"]["batch_size"]), False, self.config, per_image=per_image,
                        cached=self.eval_cache)

    def summary(self) -> Dict[str, Any]:
        """What training.json records about the input."""
        cached = self.train_cache is not None
        return {"cached": cached, "train_examples": sum(self.train_labels.values()),
                "eval_examples": self.eval_examples,
                "cache_mb": round((self.train_cache.nbytes + self.eval_cache.nbytes) / 2 ** 20, 1)
                if cached else 0.0}


def read_splits(train_files: List[str], eval_files: List[str], data_accessor: tfx.components.DataAccessor,
                tf_transform_output: tft.TFTransformOutput, config: Dict[str, Any]) -> Splits:
    """Counts both splits, and caches them when the input policy and trainer.input_cache_mb allow."""
    sources = config["trainer"]["train_sources"]
    splits = Splits(train_files, eval_files, data_accessor, tf_transform_output, config,
                    train_labels=count_labels(train_files, sources),
                    eval_examples=sum(count_labels(eval_files, sources).values()))
    train_examples = sum(splits.train_labels.values())
    needed = cache_bytes(train_examples + splits.eval_examples, config["transform"])
    limit = int(config["trainer"]["input_cache_mb"]) * 2 ** 20
    # Only splits that hold examples are cached.
    empty = not (train_examples and splits.eval_examples)
    if config["transform"]["input_policy"] != "resize" or needed > limit or empty:
        logging.info("Streaming the input every epoch: the %s policy, %d training and %d eval images, "
                     "%.1f MiB of a cache of %.1f MiB", config["transform"]["input_policy"], train_examples,
                     splits.eval_examples, needed / 2 ** 20, limit / 2 ** 20)
        return splits
    splits.train_cache = read_cached(train_files, data_accessor, tf_transform_output, sources)
    splits.eval_cache = read_cached(eval_files, data_accessor, tf_transform_output, sources)
    logging.info("Cached %d training and %d eval images, %.1f MiB", int(tf.shape(splits.train_cache.order)[0]),
                 int(tf.shape(splits.eval_cache.order)[0]), splits.summary()["cache_mb"])
    return splits


def cache_bytes(examples: int, transform_config: Dict[str, Any]) -> int:
    """Bytes that `examples` transformed images take in the cache."""
    return examples * config_lib.model_input_size(transform_config) ** 2 * 3 * _FLOAT32_BYTES


def _decoded_images(transformed: Dict[str, tf.Tensor]) -> tf.Tensor:
    """The Transform graph's images, once it decoded every one.

    Ingestion admits only images the Transform graph decodes: one it could
    not would train as a black image, so it stops the run.
    """
    decoded = tf.debugging.assert_equal(transformed[features.IMAGE_ERROR], "",
                                        message="an ingested image could not be decoded by the Transform graph")
    with tf.control_dependencies([decoded]):
        return tf.identity(transformed[features.IMAGE])


def read_cached(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
                tf_transform_output: tft.TFTransformOutput, sources: List[str]) -> CachedSplit:
    """A split read once and run through the Transform graph, with its content-hash order.

    The order sorts by the SHA-256 of the image bytes, then by label, so it is
    the same however the examples lie on disk.
    """
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(raw: Dict[str, tf.Tensor]):
        transformed = tft_layer({features.IMAGE_BYTES: raw[features.IMAGE_BYTES],
                                 features.LABEL: raw[features.LABEL]})
        return (tf.reshape(raw[features.IMAGE_BYTES], [-1]), _decoded_images(transformed),
                tf.reshape(transformed[features.LABEL], [-1, 1]))

    raw = _raw_batches(file_pattern, data_accessor, tf_transform_output, _CACHE_FILL_BATCH, False, 0, sources)
    images, labels, keys = [], [], []
    for encoded, batch_images, batch_labels in _in_threads(transform, raw):
        images.append(batch_images)
        labels.extend(batch_labels.numpy().ravel().tolist())
        keys.extend(hashlib.sha256(data).digest() for data in encoded.numpy())
    if not images:
        raise ValueError(f"{file_pattern}: no examples to train or validate on")
    order = sorted(range(len(keys)), key=lambda position: (keys[position], labels[position]))
    return CachedSplit(images=tf.concat(images, axis=0), labels=tf.constant(labels, tf.int64, [len(labels), 1]),
                       order=tf.constant(order, tf.int64))


def _in_threads(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """fn over items on every core, results in the items' order.

    Threads rather than a parallel tf.data map: the Transform graph holds
    stateful ops (its pixel-limit assertion), and under op determinism
    (training.make_repeatable) tf.data runs such a map one call at a time.
    """
    workers = os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: Deque[concurrent.futures.Future] = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def count_labels(file_patterns: List[str], sources: Optional[List[str]] = None) -> Dict[int, int]:
    """Examples per label in gzipped tf.Example files, of the given sources if any."""
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    spec = {features.LABEL: tf.io.FixedLenFeature([], tf.int64),
            features.SOURCE: tf.io.FixedLenFeature([], tf.string)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda record: tf.io.parse_single_example(record, spec))
    counts: Dict[int, int] = {}
    for example in dataset.as_numpy_iterator():
        if sources and example[features.SOURCE].decode() not in sources:
            continue
        label = int(example[features.LABEL])
        counts[label] = counts.get(label, 0) + 1
    return counts


def random_crop(index: tf.Tensor, image: tf.Tensor, size: int, seed: int) -> tf.Tensor:
    """One crop of `size` at native resolution, where (seed, index) decides."""
    image = preprocessing.pad_to_at_least(image, size)
    return tf.image.stateless_random_crop(
        image, [size, size, 3], seed=augmentation.stream_seed(seed, index, augmentation.CROP))


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, training: bool,
             config: Dict[str, Any], per_image: bool = False,
             cached: Optional[CachedSplit] = None) -> tf.data.Dataset:
    """Batches of (images [batch, side, side, 3], labels); shuffled and augmented only when training.

    From `cached` when given, else streamed from the files. Under the "crop"
    input policy, training takes one random native-resolution crop per image,
    decoded from the raw bytes by the Transform code; the evaluation data is
    the Transform graph's deterministic tiles, each scored as an example of
    its image's label (served, the tiles' probabilities are averaged per image
    instead). `per_image` keeps each image's tiles together, [batch, tiles,
    side, side, 3], for scoring as served.
    """
    trainer_config = config["trainer"]
    seed = int(trainer_config["seed"])
    if cached is not None:
        dataset = _from_cache(cached, batch_size, training, seed)
    else:
        raw = _raw_batches(file_pattern, data_accessor, tf_transform_output, batch_size, training, seed,
                           trainer_config["train_sources"])
        if training and config["transform"]["input_policy"] == "crop":
            dataset = _random_crops(raw, config_lib.model_input_size(config["transform"]), seed, batch_size)
        else:
            dataset = _transformed(raw, tf_transform_output, per_image)
    if training:
        dataset = _augmented(dataset, trainer_config, batch_size)
    return dataset.prefetch(_AUTOTUNE)


def _raw_batches(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
                 tf_transform_output: tft.TFTransformOutput, batch_size: int, training: bool, seed: int,
                 sources: List[str]) -> tf.data.Dataset:
    """Batches of raw examples in the order on disk; in training repeated, through a seeded shuffle buffer."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        # Training repeats, with epochs of a known number of steps, so that a
        # checkpoint taken mid-epoch can be resumed at its step.
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=None if training else 1,
                                       shuffle=training, shuffle_seed=seed, shuffle_buffer_size=1024),
        tf_transform_output.raw_metadata.schema)
    return only_sources(dataset, sources, batch_size) if sources else dataset


def _from_cache(cached: CachedSplit, batch_size: int, training: bool, seed: int) -> tf.data.Dataset:
    """Batches gathered from the cache in content-hash order; in training repeated and shuffled by `seed`."""
    positions = tf.data.Dataset.from_tensor_slices(cached.order)
    if training:
        positions = positions.shuffle(int(tf.shape(cached.order)[0]), seed=seed,
                                      reshuffle_each_iteration=True).repeat()
    return positions.batch(batch_size).map(
        lambda batch: (tf.gather(cached.images, batch), tf.gather(cached.labels, batch)),
        num_parallel_calls=_AUTOTUNE)


def _random_crops(raw: tf.data.Dataset, size: int, seed: int, batch_size: int) -> tf.data.Dataset:
    """One random native-resolution crop per image, decoded by the Transform code."""
    dataset = raw.map(lambda batch: (tf.reshape(batch[features.IMAGE_BYTES], [-1]),
                                     tf.reshape(batch[features.LABEL], [-1, 1])))
    return _per_image(dataset, lambda index, example: (
        random_crop(index, preprocessing.decode(example[0]), size, seed), example[1]), batch_size)


def _transformed(raw: tf.data.Dataset, tf_transform_output: tft.TFTransformOutput,
                 per_image: bool) -> tf.data.Dataset:
    """The Transform graph's images and labels; tiles become examples of their own unless `per_image`."""
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(batch: Dict[str, tf.Tensor]):
        transformed = tft_layer({features.IMAGE_BYTES: batch[features.IMAGE_BYTES],
                                 features.LABEL: batch[features.LABEL]})
        images, labels = _decoded_images(transformed), tf.reshape(transformed[features.LABEL], [-1, 1])
        if images.shape.rank == 5 and not per_image:  # tiles: one example per tile
            labels = tf.repeat(labels, images.shape[1], axis=0)
            images = tf.reshape(images, [-1, *images.shape[2:]])
        return images, labels

    return raw.map(transform, num_parallel_calls=_AUTOTUNE)


def _augmented(dataset: tf.data.Dataset, trainer_config: Dict[str, Any], batch_size: int) -> tf.data.Dataset:
    """Blur+JPEG per image, then the geometric policy per batch, as trainer.augment_* say."""
    blur_jpeg = augmentation.make_blur_jpeg(trainer_config)
    if blur_jpeg:
        dataset = _per_image(dataset, lambda index, example: (blur_jpeg(index, example[0]), example[1]),
                             batch_size)
    geometric = augmentation.make_geometric(trainer_config)
    if geometric:
        dataset = dataset.enumerate().map(lambda index, batch: (geometric(index, batch[0]), batch[1]),
                                          num_parallel_calls=_AUTOTUNE)
    return dataset


def _per_image(dataset: tf.data.Dataset, fn, batch_size: int) -> tf.data.Dataset:
    """Batches re-formed after fn(index, (image, label)) ran on each image, index its place in the stream."""
    return dataset.unbatch().enumerate().map(fn, num_parallel_calls=_AUTOTUNE).batch(batch_size)


def only_sources(dataset: tf.data.Dataset, sources: List[str], batch_size: int) -> tf.data.Dataset:
    """The batches of raw examples re-formed from the given sources' examples only."""
    wanted = tf.constant(sorted(sources))
    kept = (features.IMAGE_BYTES, features.LABEL, features.SOURCE)
    return (dataset.map(lambda raw: {name: raw[name] for name in kept})
            .unbatch()
            .filter(lambda raw: tf.reduce_any(tf.equal(tf.reshape(raw[features.SOURCE], [-1])[0], wanted)))
            .batch(batch_size))
