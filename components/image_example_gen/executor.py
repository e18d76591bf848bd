"""Beam executor of ImageExampleGen: the images of a catalog to split tf.Examples.

Besides the examples it writes the ingestion report (components/image_example_gen/
ingest.py) into the Examples artifact, under `ingest_report/`, and records the
counts on the artifact in ML Metadata.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from fakeface import catalog as catalog_lib
from fakeface.components.image_example_gen import ingest

REPORT_DIR_NAME = "ingest_report"
# Set by Executor.Do for the PTransform, which receives only exec_properties.
_REPORT_DIR_KEY = "_fakeface_report_dir"


def catalog_path(exec_properties: Dict[str, Any], split_pattern: str) -> str:
    return os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)


def ingest_options(exec_properties: Dict[str, Any]) -> ingest.IngestOptions:
    custom_config = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}"
    if isinstance(custom_config, str):
        custom_config = json.loads(custom_config)
    return ingest.IngestOptions.from_dict(custom_config.get("ingest"))


def split_config(exec_properties: Dict[str, Any]) -> example_gen_pb2.SplitConfig:
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
    return output_config.split_config


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def ImagesToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                    split_pattern: str) -> beam.pvalue.PCollection:
    """Reads every dataset of the catalog at input_base/split_pattern."""
    catalog = catalog_lib.load(catalog_path(exec_properties, split_pattern))
    ingested = pipeline | "Ingest" >> ingest.IngestCatalog(catalog, ingest_options(exec_properties))
    if exec_properties.get(_REPORT_DIR_KEY):
        ingest.write_report_parts(ingested, exec_properties[_REPORT_DIR_KEY], split_config(exec_properties))
    return ingested[ingest.EXAMPLES] | "ToExample" >> beam.Map(ingest.to_example)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Turns a catalog of image folders into tf.Examples and an ingestion report."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ImagesToExample

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        report_dir = os.path.join(examples.uri, REPORT_DIR_NAME)
        super().Do(input_dict, output_dict, dict(exec_properties, **{_REPORT_DIR_KEY: report_dir}))

        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        catalog = catalog_lib.load(catalog_path(exec_properties, input_config.splits[0].pattern))
        report = ingest.render_report(report_dir, catalog, ingest_options(exec_properties))
        for key, value in report["totals"].items():
            examples.set_int_custom_property(f"files_{key}", value)
        examples.set_int_custom_property("shortcut_warnings", len(report["warnings"]))
        examples.set_string_custom_property("ingest_report", os.path.join(report_dir, ingest.REPORT_HTML))
        for warning in report["warnings"]:
            logging.warning("%s", warning)
        logging.info("Ingestion report: %s", os.path.join(report_dir, ingest.REPORT_HTML))
