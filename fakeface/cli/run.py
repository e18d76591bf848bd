"""`fakeface run`: the whole pipeline on this machine."""

from __future__ import annotations

import argparse
import sys
import time

from fakeface.cli.errors import EXIT_FAILED, EXIT_OK


def _summary(config, elapsed: float) -> int:
    from fakeface.pipeline import results

    summary = results.latest_run(config.metadata_path_resolved, config.pipeline_name)
    print()
    print(f"Pipeline {config.pipeline_name!r} finished in {elapsed:.0f} s (run {summary.run_id}).")
    print("Steps: " + ", ".join(f"{node} {state.lower()}" for node, state in sorted(summary.executions.items())))
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
    failed = sorted(node for node, state in summary.executions.items() if state == "FAILED")
    if summary.validation_blocking:
        print("Data validation stopped the run before Transform (validation.fail_on):", file=sys.stderr)
        for line in summary.validation_blocking:
            print(f"  {line}", file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)}; the log above says why.", file=sys.stderr)
        return EXIT_FAILED
    if summary.pushed:
        print(f"Model blessed and pushed to {summary.pushed_destination}")
    else:
        print(f"Model NOT pushed (blessed: {summary.blessed}).", file=sys.stderr)
        for reason in summary.not_blessed_because:
            print(f"  not blessed: {reason}", file=sys.stderr)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from fakeface import catalog as catalog_lib
    from fakeface.pipeline import config as config_lib

    overrides = {}
    if args.catalog:
        overrides["catalog"] = args.catalog
    if args.no_cache:
        overrides["enable_cache"] = False
    config = config_lib.load(args.config, overrides)
    catalog_lib.load(config.catalog_path)  # fails fast, naming the file

    from fakeface.pipeline import local_runner, pipeline, results

    if pipeline.ensure_local_backbone(config):
        print(f"Built the {config.trainer.backbone} backbone as a TF Hub module at "
              f"{pipeline.backbone_handle(config)}")
    started = time.monotonic()
    try:
        local_runner.run(config)
    except Exception:  # noqa: BLE001
        # Blocking data anomalies end a run by design, and the summary names
        # them; any other failure is a fault whose traceback is wanted.
        if not results.latest_run(config.metadata_path_resolved, config.pipeline_name).validation_blocking:
            raise
    return _summary(config, time.monotonic() - started)


def register(commands) -> None:
    run = commands.add_parser("run", help="run the whole pipeline on this machine")
    run.add_argument("--config", help="YAML config file (see pipeline/config.py); defaults otherwise")
    run.add_argument("--catalog", help="dataset catalog YAML, overriding the config's")
    run.add_argument("--no-cache", action="store_true", help="re-run every step even if unchanged")
    run.set_defaults(func=_run)
