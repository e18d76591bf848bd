"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner."""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator, Optional

from absl import logging as absl_logging
from tfx import v1 as tfx
from tfx.dsl.compiler import constants
from tfx.orchestration.portable import runtime_parameter_utils

from fakeface.pipeline import config as config_lib
from fakeface.pipeline import pipeline, reader_batches, runs

# Called with a node id and "start" or "end", as the runner starts and ends each node.
StepListener = Callable[[str, str], None]

# How LocalDagRunner announces each node, through absl logging (tfx 1.16).
_ANNOUNCEMENTS = {"Component %s is running.": "start", "Component %s is finished.": "end"}


class _Runner(tfx.orchestration.LocalDagRunner):
    """LocalDagRunner under a run id its caller chose, so that the caller can read that run back."""

    def __init__(self, run_id: str):
        super().__init__()
        self._run_id = run_id

    def run_with_ir(self, pipeline_ir, run_options=None):
        # The runner fills the parameter with a timestamp of its own unless it is set already.
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline_ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: self._run_id})
        return super().run_with_ir(pipeline_ir, run_options)


class _Announcements(logging.Handler):
    """Turns the runner's announcement of each node into a call of `listener`."""

    def __init__(self, listener: StepListener):
        super().__init__(logging.INFO)
        self._listener = listener

    def emit(self, record: logging.LogRecord) -> None:
        event = _ANNOUNCEMENTS.get(record.msg) if isinstance(record.msg, str) else None
        if event and record.args:
            self._listener(str(record.args[0]), event)


@contextlib.contextmanager
def _listening(listener: Optional[StepListener]) -> Iterator[None]:
    if listener is None:
        yield
        return
    handler, verbosity = _Announcements(listener), absl_logging.get_verbosity()
    absl_logging.get_absl_logger().addHandler(handler)
    # The announcements are INFO records. Through absl's verbosity, not the
    # logger's level: TensorFlow restores the verbosity after saving a model.
    absl_logging.set_verbosity(max(verbosity, absl_logging.INFO))  # absl: higher is more
    try:
        yield
    finally:
        absl_logging.get_absl_logger().removeHandler(handler)
        absl_logging.set_verbosity(verbosity)


def run(config: config_lib.PipelineConfig, run_id: Optional[str] = None,
        listener: Optional[StepListener] = None) -> str:
    """Runs the pipeline once; returns the run's id, under which ML Metadata records it."""
    run_id = run_id or runs.new_run_id()
    reader_batches.by_bytes()
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path_resolved)
    with _listening(listener):
        _Runner(run_id).run(pipeline.create_pipeline(config, metadata))
    return run_id
