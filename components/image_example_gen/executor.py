"""Beam executor of ImageExampleGen: image files of a catalog to tf.Examples.

Every file found under a catalog dataset ends in exactly one place: as an
example, as a duplicate of an identical file kept elsewhere, or in quarantine
with the reason. The split (done by TFX from the content hash) never sees two
copies of one image, so an image cannot be in train and test at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Dict, Iterable, Tuple

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import fileio
from tfx.components.example_gen import base_example_gen_executor
from tfx.types import standard_component_specs

from fakeface import catalog as catalog_lib
from fakeface import features
from fakeface import images

QUARANTINE = "quarantine"
_METRICS_NAMESPACE = "fakeface.ingest"


def catalog_path(exec_properties: Dict[str, Any], split_pattern: str) -> str:
    return os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)


def _relative_path(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else os.path.basename(path)


def to_example(record: Dict[str, Any]) -> tf.train.Example:
    """A tf.Example with every raw feature of features.RAW_FEATURES."""
    feature = {}
    for name in features.STRING_FEATURES:
        value = record[name]
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[value if isinstance(value, bytes) else value.encode("utf-8")]))
    for name in features.INT_FEATURES:
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(record[name])]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


class _InspectFile(beam.DoFn):
    """Reads one file and yields its record, or a quarantine entry."""

    def __init__(self, dataset: catalog_lib.Dataset, max_pixels: int):
        self._dataset = dataset
        self._max_pixels = max_pixels
        self._ingested = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "read")
        self._quarantined = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, QUARANTINE)

    def process(self, readable: fileio.ReadableFile) -> Iterable[Any]:
        path = readable.metadata.path
        dataset = self._dataset
        try:
            data = readable.read()
            info = images.inspect(data, self._max_pixels)
        except (images.BadImage, OSError) as e:
            self._quarantined.inc()
            logging.warning("Quarantined %s (%s): %s", path, dataset.name, e)
            yield beam.pvalue.TaggedOutput(QUARANTINE, {
                "source": dataset.name, "path": path, "reason": str(e)})
            return
        self._ingested.inc()
        yield {
            features.IMAGE_BYTES: data,
            features.LABEL: dataset.label,
            features.SOURCE: dataset.name,
            features.GENERATOR: dataset.generator,
            features.SHOT: dataset.shot,
            features.CONTENT_HASH: hashlib.sha256(data).hexdigest(),
            features.IMAGE_FORMAT: info.format,
            features.WIDTH: info.width,
            features.HEIGHT: info.height,
            features.RELATIVE_PATH: _relative_path(path, dataset.root),
        }


def _keep_one(keyed: Tuple[str, Iterable[Dict[str, Any]]]) -> Dict[str, Any]:
    """Of byte-identical files, keeps the first by (source, path): deterministic."""
    _, records = keyed
    ordered = sorted(records, key=lambda r: (r[features.SOURCE], r[features.RELATIVE_PATH]))
    if len(ordered) > 1:
        logging.info("Kept %s/%s; identical copies dropped: %s", ordered[0][features.SOURCE],
                     ordered[0][features.RELATIVE_PATH],
                     [f"{r[features.SOURCE]}/{r[features.RELATIVE_PATH]}" for r in ordered[1:]])
    return ordered[0]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def ImagesToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                    split_pattern: str) -> beam.pvalue.PCollection:
    """Reads every dataset of the catalog at input_base/split_pattern."""
    catalog = catalog_lib.load(catalog_path(exec_properties, split_pattern))
    max_pixels = images.DEFAULT_MAX_PIXELS
    records = []
    for dataset in catalog.datasets:
        matches = pipeline | f"Match[{dataset.name}]" >> fileio.MatchFiles(
            dataset.file_pattern, empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
        if dataset.limit:
            matches = (matches
                       | f"Limit[{dataset.name}]" >> beam.combiners.Top.Of(
                           dataset.limit, key=lambda m: hashlib.sha256(m.path.encode()).hexdigest(),
                           reverse=True)
                       | f"Unlist[{dataset.name}]" >> beam.FlatMap(lambda ms: ms))
        inspected = (matches
                     | f"Read[{dataset.name}]" >> fileio.ReadMatches()
                     | f"Inspect[{dataset.name}]" >> beam.ParDo(
                         _InspectFile(dataset, max_pixels)).with_outputs(QUARANTINE, main="records"))
        records.append(inspected.records)
    return (records
            | "Flatten" >> beam.Flatten()
            | "KeyByHash" >> beam.Map(lambda r: (r[features.CONTENT_HASH], r))
            | "GroupByHash" >> beam.GroupByKey()
            | "Deduplicate" >> beam.Map(_keep_one)
            | "ToExample" >> beam.Map(to_example))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Turns a catalog of image folders into tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ImagesToExample
