"""`fakeface ingest`: the pipeline's ingestion, outside the pipeline."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts, standard_component_specs

from fakeface import catalog as catalog_lib
from fakeface.components.image_example_gen import ingest
from fakeface.components.image_example_gen.component import ImageExampleGen
from fakeface.components.image_example_gen.executor import (REPORT_DIR_NAME, Executor, ingest_options,
                                                            split_config)


def run(catalog_path: str, out_dir: str, split_buckets: Dict[str, int], options: Dict[str, Any],
        beam_pipeline_args: List[str], dry_run: bool = False) -> Dict[str, Any]:
    """Writes Split-*/ TFRecords (unless `dry_run`) and ingest_report/ under
    `out_dir`, exactly as ImageExampleGen would; returns the report."""
    catalog = catalog_lib.load(catalog_path)
    exec_properties = dict(ImageExampleGen(catalog_path, split_buckets, options).exec_properties)
    report_dir = os.path.join(out_dir, REPORT_DIR_NAME)
    if dry_run:
        with beam.Pipeline(options=PipelineOptions(beam_pipeline_args)) as pipeline:
            ingested = pipeline | "Ingest" >> ingest.IngestCatalog(catalog, ingest_options(exec_properties))
            ingest.write_report_parts(ingested, report_dir, split_config(exec_properties))
        return ingest.render_report(report_dir, catalog, ingest_options(exec_properties), dry_run=True)
    examples = standard_artifacts.Examples()
    examples.uri = out_dir
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_pipeline_args)
    Executor(context).Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    with tf.io.gfile.GFile(os.path.join(report_dir, ingest.REPORT_JSON)) as f:
        return json.load(f)
