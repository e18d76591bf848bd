"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner."""

from tfx import v1 as tfx

from fakeface.pipeline import config as config_lib
from fakeface.pipeline import pipeline


def run(config: config_lib.PipelineConfig) -> None:
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path_resolved)
    tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(config, metadata))
