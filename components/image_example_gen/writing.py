"""Stage 4 of ingestion: each kept file read again and written as a tf.Example into its split.

The bytes go from the file straight into the split's TFRecord file inside one
stage: no image's bytes ever cross a shuffle. Each bundle writes its own file
per split under a staging folder; once every bundle is done, `finalize` moves
them to the Examples artifact's layout (Split-<name>/data_tfrecord-*.gz) and
removes the staging folder. A bundle that fails and is retried (Dataflow)
leaves only an unlisted file behind in the staging folder.

The files are GZIP TFRecords, as every TFX reader and the Trainer expect, but
with stored (uncompressed) deflate blocks: image files do not compress, and
compressing them cost more than decoding them.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue

from fakeface import catalog as catalog_lib
from fakeface import features, images
from fakeface.components.image_example_gen import inspection
from fakeface.components.image_example_gen.records import FileRecord, Quarantined
from fakeface.pipeline.config import IngestConfig

QUARANTINE = "quarantine"
SHARDS = "shards"
FILE_PREFIX = "data_tfrecord"
_OPTIONS = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=0)


def split_folder(examples_dir: str, split_name: str) -> str:
    """Where TFX's readers find a split of an Examples artifact."""
    return os.path.join(examples_dir, f"Split-{split_name}")


def to_example(record: FileRecord, dataset: catalog_lib.Dataset, data: bytes, content_hash: str) -> tf.train.Example:
    """The tf.Example of a kept file: every raw feature of features.RAW_FEATURES."""
    strings = {
        features.IMAGE_BYTES: data,
        features.SOURCE: dataset.name,
        features.GENERATOR: dataset.generator,
        features.SHOT: dataset.shot,
        features.CONTENT_HASH: content_hash,
        features.PERCEPTUAL_HASH: record.perceptual_hash,
        features.IMAGE_FORMAT: record.format,
        features.RESOLUTION_BUCKET: images.resolution_bucket(record.width, record.height),
        features.RELATIVE_PATH: record.relative_path,
    }
    ints = {features.LABEL: dataset.label, features.WIDTH: record.width, features.HEIGHT: record.height,
            features.JPEG_QUALITY: record.jpeg_quality}
    example = tf.train.Example()
    feature = example.features.feature  # filled in place: half the time of building Feature objects
    for name, value in strings.items():
        feature[name].bytes_list.value.append(value if isinstance(value, bytes) else value.encode("utf-8"))
    for name, value in ints.items():
        feature[name].int64_list.value.append(int(value))
    return example


class WriteExamples(beam.DoFn):
    """Writes batches of (split index, FileRecord) into this bundle's file of each split.

    Emits each batch of what it wrote, for the report; a file that changed
    since it was inspected is quarantined instead. When the bundle ends it
    emits (split index, file) under SHARDS for `finalize`.
    """

    def __init__(self, staging_dir: str, datasets: Sequence[catalog_lib.Dataset], config: IngestConfig):
        self._staging_dir = staging_dir
        self._datasets = {d.name: d for d in datasets}
        self._config = config
        self._writers: Dict[int, Tuple[str, tf.io.TFRecordWriter]] = {}

    def setup(self) -> None:
        tf.io.gfile.makedirs(self._staging_dir)

    def start_bundle(self) -> None:
        self._writers = {}

    def _writer(self, split: int) -> tf.io.TFRecordWriter:
        if split not in self._writers:
            path = os.path.join(self._staging_dir, f"{split}-{uuid.uuid4().hex}.gz")
            self._writers[split] = (path, tf.io.TFRecordWriter(path, options=_OPTIONS))
        return self._writers[split][1]

    def _stored(self, record: FileRecord) -> Tuple[bytes, str]:
        """The bytes the example stores, and their SHA-256."""
        data = inspection.read_file(record.path)
        if hashlib.sha256(data).hexdigest() != record.content_sha256:
            raise ValueError("the file changed while it was being ingested; ingest again")
        stored = inspection.stored_bytes(data, self._config)
        return stored, (record.content_sha256 if stored is data else hashlib.sha256(stored).hexdigest())

    def process(self, batch: Sequence[Tuple[int, FileRecord]]) -> Iterable:
        written: List[Tuple[int, FileRecord]] = []
        for split, record in batch:
            try:
                data, content_hash = self._stored(record)
            except Exception as e:  # pylint: disable=broad-except
                yield beam.pvalue.TaggedOutput(QUARANTINE, Quarantined(
                    record.source, record.path, inspection.reason(e)).to_dict())
                continue
            example = to_example(record, self._datasets[record.source], data, content_hash)
            self._writer(split).write(example.SerializeToString())
            written.append((split, record))
        yield written

    def finish_bundle(self) -> Iterable:
        for split, (path, writer) in sorted(self._writers.items()):
            writer.close()
            yield beam.pvalue.TaggedOutput(SHARDS, WindowedValue(
                (split, path), window.GlobalWindow().max_timestamp(), [window.GlobalWindow()]))
        self._writers = {}


def finalize(shards: Iterable[Tuple[int, str]], examples_dir: str, split_names: Sequence[str],
             staging_dir: str) -> None:
    """Moves the bundles' files into Split-<name>/ as data_tfrecord-NNNNN-of-MMMMM.gz.

    A split without examples gets one empty file, so that every split reads.
    """
    by_split: Mapping[int, List[str]] = {index: [] for index in range(len(split_names))}
    for split, path in shards:
        by_split[split].append(path)
    for index, name in enumerate(split_names):
        folder = split_folder(examples_dir, name)
        tf.io.gfile.makedirs(folder)
        paths = sorted(by_split[index])
        for number, path in enumerate(paths):
            tf.io.gfile.rename(path, os.path.join(folder, f"{FILE_PREFIX}-{number:05d}-of-{len(paths):05d}.gz"),
                               overwrite=True)
        if not paths:
            with tf.io.TFRecordWriter(os.path.join(folder, f"{FILE_PREFIX}-00000-of-00001.gz"), options=_OPTIONS):
                pass
    tf.io.gfile.rmtree(staging_dir)
