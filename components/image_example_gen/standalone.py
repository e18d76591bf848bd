"""`fakeface ingest`: the pipeline's ingestion, outside the pipeline.

OUT_DIR receives exactly what ImageExampleGen writes into its Examples
artifact. It must not exist, or be empty: the run builds in a hidden folder
beside it and renames that into place when it is complete (on a local disk, in
one step), so OUT_DIR never holds a partial or mixed ingestion, and a failed
or interrupted run removes its hidden folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any, Dict, List

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts, standard_component_specs

from fakeface import catalog as catalog_lib
from fakeface.components.image_example_gen import executor, ingest
from fakeface.components.image_example_gen.component import ImageExampleGen
from fakeface.pipeline.config import IngestConfig


class OutputNotEmpty(ValueError):
    """OUT_DIR holds something already; str() says what to do."""


def _check_output(out_dir: str) -> None:
    if tf.io.gfile.exists(out_dir) and (not tf.io.gfile.isdir(out_dir) or tf.io.gfile.listdir(out_dir)):
        raise OutputNotEmpty(f"{out_dir} exists and is not an empty folder; ingest into a new folder, "
                             "or remove it first")


def _build(catalog_path: str, build_dir: str, split_buckets: Dict[str, int], config: IngestConfig,
           beam_pipeline_args: List[str], dry_run: bool) -> Dict[str, Any]:
    exec_properties = dict(ImageExampleGen(catalog_path, split_buckets, dataclasses.asdict(config)).exec_properties)
    if dry_run:
        return executor.dry_run(catalog_lib.load(catalog_path), config, executor.split_config(exec_properties),
                                os.path.join(build_dir, executor.REPORT_DIR_NAME), beam_pipeline_args)
    examples = standard_artifacts.Examples()
    examples.uri = build_dir
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_pipeline_args)
    executor.Executor(context).Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    with tf.io.gfile.GFile(os.path.join(build_dir, executor.REPORT_DIR_NAME, ingest.REPORT_JSON)) as f:
        return json.load(f)


def run(catalog_path: str, out_dir: str, split_buckets: Dict[str, int], config: IngestConfig,
        beam_pipeline_args: List[str], dry_run: bool = False) -> Dict[str, Any]:
    """Writes Split-*/ TFRecords (unless `dry_run`) and ingest_report/ into `out_dir`,
    exactly as ImageExampleGen would; returns the report.

    Raises OutputNotEmpty, before any work, when `out_dir` holds anything.
    """
    out_dir = out_dir.rstrip("/")
    _check_output(out_dir)
    build_dir = os.path.join(os.path.dirname(out_dir) or ".",
                             f".{os.path.basename(out_dir)}.partial-{uuid.uuid4().hex}")
    try:
        report = _build(catalog_path, build_dir, split_buckets, config, beam_pipeline_args, dry_run)
        _check_output(out_dir)  # nothing appeared there meanwhile
        tf.io.gfile.rename(build_dir, out_dir, overwrite=True)
        return report
    finally:
        if tf.io.gfile.exists(build_dir):
            tf.io.gfile.rmtree(build_dir)
