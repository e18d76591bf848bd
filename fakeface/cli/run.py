"""`fakeface run`: the whole pipeline on this machine.

The config, the catalog and its datasets are checked before anything heavy
is imported or started, so that a mistake in them costs a second, not a
backbone build. The terminal shows a line per step, the Trainer's epochs and
the summary; everything else goes to the run's log file (with `--verbose`,
to the terminal).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Optional

from fakeface.cli.output import EpochHandler, StepLines, captured, tail
from fakeface.cli.errors import EXIT_OK, UsageError, WorkFailed

# A step's state in ML Metadata, as its line says it; a step without an
# execution was skipped (the Pusher of a model that is not blessed).
_STATES = {"COMPLETE": "complete", "CACHED": "cached", None: "skipped"}


def _checked_config(args: argparse.Namespace):
    """The config, once it, its catalog and the catalog's datasets are known to be usable."""
    from fakeface import catalog as catalog_lib
    from fakeface.pipeline import config as config_lib

    overrides = {}
    if args.catalog:
        overrides["catalog"] = args.catalog
    if args.no_cache:
        overrides["enable_cache"] = False
    config = config_lib.load(args.config, overrides)
    if not config.catalog and not os.path.isfile(config.catalog_path):
        raise UsageError(f"{config.catalog_path}: no catalog; draw the sample data with `fakeface sample-data "
                         f"{config.sample_data_dir}`, or name one with --catalog or the config's `catalog`")
    catalog = catalog_lib.load(config.catalog_path)
    catalog_lib.check_local_datasets(catalog)
    config_lib.check_train_sources(config, catalog, args.config or "config")
    return config


def _execute(config, run_id: str, steps: StepLines) -> None:
    """Builds the backbone if it is missing, then runs the pipeline, a line per step on `steps`."""
    from fakeface.pipeline import local_runner, pipeline, results

    def on_step(node: str, event: str) -> None:
        if event == "start":
            steps.start(node)
        else:
            state = results.node_state(config.metadata_path_resolved, config.pipeline_name, run_id, node)
            steps.end(node, _STATES.get(state, str(state).lower()))

    steps.start("Backbone")
    steps.end("Backbone", "built" if pipeline.ensure_local_backbone(config) else "ready")
    local_runner.run(config, run_id, on_step)


class _StepFailed(Exception):
    """`error` ended the run in `step` (None: before any step), whose log begins at `log_offset`."""

    def __init__(self, step, error: Exception, log_offset: int):
        super().__init__(step)
        self.step, self.error, self.log_offset = step, error, log_offset


def _execute_or_fail(config, run_id: str, steps: StepLines) -> None:
    """_execute; a failure's traceback goes where the steps print, its step is marked failed, _StepFailed raised."""
    try:
        _execute(config, run_id, steps)
    except Exception as e:  # noqa: BLE001  (any step's failure, reported by _report_failure)
        # To the process's own stderr, which a captured run sends to its log,
        # even where sys.stderr is another stream (an embedding program's).
        traceback.print_exc(file=sys.__stderr__)
        step = steps.running
        if step:
            steps.end(step, "failed")
        raise _StepFailed(step, e, steps.log_offsets.get(step, 0)) from e


def _captured_run(config, run_id: str, log_path: str) -> None:
    """_execute_or_fail with the step lines and epochs on the terminal, and all else in the log."""
    from fakeface import progress

    with captured(log_path) as terminal:
        terminal.write(f"Pipeline {config.pipeline_name!r}, run {run_id}; log: {log_path}\n")
        steps = StepLines(terminal, inline=True, log_path=log_path)
        epochs = EpochHandler(steps)
        progress.LOGGER.addHandler(epochs)
        try:
            _execute_or_fail(config, run_id, steps)
        finally:
            steps.close()
            progress.LOGGER.removeHandler(epochs)


def _report_failure(config, run_id: str, failed: _StepFailed, log_path: Optional[str]) -> None:
    """Raises the one-line error of a failed run, after the end of the failed step's log.

    Blocking data anomalies end a run by design: their lines, recorded in ML
    Metadata, say why, and the log has nothing to add.
    """
    from fakeface import catalog as catalog_lib
    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import results

    if isinstance(failed.error, (catalog_lib.CatalogError, config_lib.ConfigError)):
        raise failed.error from None
    blocking = results.run_summary(config.metadata_path_resolved, config.pipeline_name, run_id).validation_blocking
    if blocking:
        print("\nData validation stopped the run before Transform (validation.fail_on):", file=sys.stderr)
        for line in blocking:
            print(f"  {line}", file=sys.stderr)
        raise WorkFailed(f"data validation found {len(blocking)} blocking anomal{'y' if len(blocking) == 1 else 'ies'}"
                         + (f"; the whole log: {log_path}" if log_path else "")) from None
    step = failed.step or "the pipeline"
    message = str(failed.error).strip().splitlines()
    reason = f"{step} failed ({type(failed.error).__name__}{': ' + message[0] if message else ''})"
    if not log_path:
        raise WorkFailed(reason) from failed.error
    print(f"\n{step[0].upper() + step[1:]} failed. The last lines of its log:\n", file=sys.stderr)
    print(tail(log_path, failed.log_offset), file=sys.stderr)
    raise WorkFailed(f"{reason}; the whole log: {log_path}") from failed.error


def _summary(config, run_id: str, elapsed: float) -> None:
    from fakeface.pipeline import results

    summary = results.run_summary(config.metadata_path_resolved, config.pipeline_name, run_id)
    print()
    print(f"Pipeline {config.pipeline_name!r} finished in {elapsed:.0f} s (run {run_id}).")
    if summary.ingest_report:
        print(f"Ingestion report: {summary.validation_report or summary.ingest_report}")
        for warning in results.ingest_warnings(summary.ingest_report):
            print(f"WARNING: {warning}", file=sys.stderr)
    for warning in summary.validation_warnings:
        print(f"WARNING: data validation: {warning}", file=sys.stderr)
    if summary.report_html:
        print()
        print("Test split, by source:")
        print(results.source_table(summary.report_html))
        print(f"Evaluation report: {summary.report_html}")
    print()
    if summary.pushed:
        print(f"Model blessed and pushed to {summary.pushed_destination}")
    else:
        print(f"Model NOT pushed (blessed: {summary.blessed}).", file=sys.stderr)
        for reason in summary.not_blessed_because:
            print(f"  not blessed: {reason}", file=sys.stderr)


def _run_held(config, verbose: bool) -> int:
    from fakeface.pipeline import runs

    run_id = runs.new_run_id()
    log_path = None if verbose else runs.log_path(config.runs_root, config.pipeline_name, run_id)
    started = time.monotonic()
    try:
        if verbose:
            _execute_or_fail(config, run_id, StepLines(sys.stdout, inline=False))
        else:
            _captured_run(config, run_id, log_path)
    except _StepFailed as failed:
        _report_failure(config, run_id, failed, log_path)
    _summary(config, run_id, time.monotonic() - started)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    config = _checked_config(args)

    from fakeface.pipeline import runs

    try:
        with runs.hold(config.runs_root):
            return _run_held(config, args.verbose)
    except runs.RunsRootBusy as e:
        raise WorkFailed(e) from e
    except runs.RunsRootUnusable as e:
        raise UsageError(e) from e


def register(commands) -> None:
    run = commands.add_parser("run", help="run the whole pipeline on this machine")
    run.add_argument("--config", help="YAML config file (see pipeline/config.py); defaults otherwise")
    run.add_argument("--catalog", help="dataset catalog YAML, overriding the config's")
    run.add_argument("--no-cache", action="store_true", help="re-run every step even if unchanged")
    run.add_argument("--verbose", action="store_true",
                     help="show all the steps print (TensorFlow, Beam, pip) on the terminal, "
                          "instead of in the run's log file")
    run.set_defaults(func=_run)
