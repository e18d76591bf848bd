"""Beam executor of ImageExampleGen: the images of a catalog to split tf.Examples.

It writes the Examples artifact's splits as TFX's ExampleGens do (Split-<name>/
GZIP TFRecords of tf.Examples), but with its own Beam pipeline
(components/image_example_gen/ingest.py), in which no image's bytes are
shuffled. Besides the examples it writes the ingestion report into the
artifact, under `ingest_report/`, and records the counts on the artifact in ML
Metadata.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from fakeface import catalog as catalog_lib
from fakeface.components.image_example_gen import ingest
from fakeface.pipeline.config import IngestConfig

REPORT_DIR_NAME = "ingest_report"


def catalog_path(exec_properties: Dict[str, Any]) -> str:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    return os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern)


def ingest_config(exec_properties: Dict[str, Any]) -> IngestConfig:
    custom_config = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}"
    if isinstance(custom_config, str):
        custom_config = json.loads(custom_config)
    return IngestConfig(**custom_config.get("ingest", {}))


def split_config(exec_properties: Dict[str, Any]) -> example_gen_pb2.SplitConfig:
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
    return output_config.split_config


def _empty(folder: str) -> None:
    """Removes whatever an earlier, failed attempt of this execution left in its output folder."""
    if fileio.exists(folder):
        fileio.rmtree(folder)
    fileio.makedirs(folder)


class Executor(base_beam_executor.BaseBeamExecutor):
    """Turns a catalog of image folders into tf.Examples and an ingestion report."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        catalog = catalog_lib.load(catalog_path(exec_properties))
        config, splits = ingest_config(exec_properties), split_config(exec_properties)
        report_dir = os.path.join(examples.uri, REPORT_DIR_NAME)
        _empty(examples.uri)
        with self._make_beam_pipeline() as pipeline:
            ingested = pipeline | "Ingest" >> ingest.IngestCatalog(catalog, config, splits, examples.uri)
            ingest.write_report_parts(ingested, report_dir)
        report = ingest.render_report(report_dir, catalog, config)

        examples.split_names = artifact_utils.encode_split_names([s.name for s in splits.splits])
        # What TFX's readers need to know: tf.Examples in GZIP TFRecords (writing.py).
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
        for key, value in report["totals"].items():
            examples.set_int_custom_property(f"files_{key}", value)
        examples.set_int_custom_property("shortcut_warnings", len(report["warnings"]))
        examples.set_string_custom_property("ingest_report", os.path.join(report_dir, ingest.REPORT_HTML))
        for warning in report["warnings"]:
            logging.warning("%s", warning)
        logging.info("Ingestion report: %s", os.path.join(report_dir, ingest.REPORT_HTML))


def dry_run(catalog: catalog_lib.Catalog, config: IngestConfig, splits: example_gen_pb2.SplitConfig,
            report_dir: str, beam_pipeline_args: List[str]) -> Dict[str, Any]:
    """The ingestion report alone, written into `report_dir`: every file inspected, no example written."""
    executor = Executor(base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_pipeline_args))
    with executor._make_beam_pipeline() as pipeline:  # pylint: disable=protected-access
        ingest.write_report_parts(pipeline | "Ingest" >> ingest.IngestCatalog(catalog, config, splits, None),
                                  report_dir)
    return ingest.render_report(report_dir, catalog, config, dry_run=True)
