"""The `fakeface` command.

    fakeface sample-data OUT_DIR [--per-source N] [--size PX] [--seed S]
    fakeface run [--config FILE] [--catalog FILE] [--no-cache]
    fakeface ingest CATALOG OUT_DIR [--config FILE] [--dry-run] [--workers N]
    fakeface schema [--write | --check]
    fakeface report, experiments (fakeface/evaluation_cli.py)

TensorFlow is imported only by the subcommands that need it, so the quick
ones stay quick.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from fakeface import evaluation_cli, kubeflow_cli
from fakeface.serving import serving_cli


def _sample_data(args: argparse.Namespace) -> int:
    from fakeface import sample_data

    started = time.monotonic()
    try:
        catalog_path = sample_data.generate(args.out_dir, per_source=args.per_source,
                                            size=args.size, seed=args.seed)
    except ValueError as e:
        print(f"fakeface sample-data: error: {e}", file=sys.stderr)
        return 2
    count = args.per_source * len(sample_data.SOURCES)
    print(f"Wrote {count} synthetic images ({args.size} px, seed {args.seed}) in "
          f"{time.monotonic() - started:.1f} s; catalog: {catalog_path}")
    return 0


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

    from fakeface.components.trainer import backbones
    from fakeface.pipeline import local_runner, pipeline, results

    handle = pipeline.backbone_handle(config)
    if backbones.ensure_local_backbone(config.trainer.backbone, handle, seed=config.trainer.seed):
        print(f"Built the {config.trainer.backbone} backbone as a TF Hub module at {handle}")

    started = time.monotonic()
    local_runner.run(config)
    elapsed = time.monotonic() - started

    summary = results.latest_run(config.metadata_path_resolved, config.pipeline_name)
    print()
    print(f"Pipeline {config.pipeline_name!r} finished in {elapsed:.0f} s (run {summary.run_id}).")
    print("Steps: " + ", ".join(f"{node} {state.lower()}" for node, state in sorted(summary.executions.items())))
    if summary.ingest_report:
        print(f"Ingestion report: {summary.ingest_report}")
        for warning in results.ingest_warnings(summary.ingest_report):
            print(f"WARNING: {warning}", file=sys.stderr)
    if summary.report_html:
        print()
        print("Test split, by source:")
        print(results.source_table(summary.report_html))
        print(f"Evaluation report: {summary.report_html}")
    print()
    failed = sorted(node for node, state in summary.executions.items() if state == "FAILED")
    if failed:
        print(f"FAILED: {', '.join(failed)}; the log above says why.", file=sys.stderr)
        return 1
    if summary.pushed:
        print(f"Model blessed and pushed to {summary.pushed_destination}")
    else:
        print(f"Model NOT pushed (blessed: {summary.blessed}).", file=sys.stderr)
        for reason in summary.not_blessed_because:
            print(f"  not blessed: {reason}", file=sys.stderr)
    return 0


def _ingest(args: argparse.Namespace) -> int:
    import dataclasses

    from fakeface import catalog as catalog_lib
    from fakeface.pipeline import config as config_lib

    config = config_lib.load(args.config)
    catalog_lib.load(args.catalog)  # fails fast, naming the file
    beam_args = list(config.beam_pipeline_args)
    if args.workers:
        beam_args = [a for a in beam_args if not a.startswith(("--direct_running_mode", "--direct_num_workers"))]
        beam_args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]

    from fakeface.components.image_example_gen import driver, executor, ingest

    driver.catalog_fingerprint(args.catalog)  # every dataset exists and has files
    started = time.monotonic()
    report = executor.run_standalone(
        args.catalog, args.out_dir,
        {"train": config.splits.train, "eval": config.splits.eval, "test": config.splits.test},
        dataclasses.asdict(config.ingest), beam_args, dry_run=args.dry_run)
    totals = report["totals"]
    print(f"{totals['found']} files found in {time.monotonic() - started:.1f} s: {totals['ingested']} "
          f"ingested, {totals['duplicates']} exact duplicates dropped, {totals['quarantined']} quarantined.")
    for name, row in report["datasets"].items():
        splits = ", ".join(f"{split} {count}" for split, count in sorted(row["splits"].items()))
        print(f"  {name:<18} {row['label']:<4} found {row['found']:>6}  ingested {row['ingested']:>6}  "
              f"duplicates {row['duplicates']:>5}  quarantined {row['quarantined']:>5}  ({splits})")
    for warning in report["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    report_dir = os.path.join(args.out_dir, executor.REPORT_DIR_NAME)
    print(f"Report: {os.path.join(report_dir, ingest.REPORT_HTML)} "
          f"(and {ingest.REPORT_JSON})" + ("" if args.dry_run else f"; examples under {args.out_dir}"))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from fakeface import schemas

    if args.write:
        schemas.write_schema()
        print(f"Wrote {schemas.SCHEMA_PATH}")
        return 0
    with open(schemas.SCHEMA_PATH, encoding="utf-8") as f:
        current = f.read()
    if args.check:
        if current != schemas.schema_text():
            print(f"{schemas.SCHEMA_PATH} is out of date with fakeface/features.py; "
                  "run `fakeface schema --write`", file=sys.stderr)
            return 1
        print(f"{schemas.SCHEMA_PATH} is up to date")
        return 0
    print(current, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fakeface", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample-data", help="draw the synthetic sample datasets and their catalog")
    sample.add_argument("out_dir", help="folder to write into (created; must be empty or an earlier sample set)")
    sample.add_argument("--per-source", type=int, default=40, help="images per source (default 40)")
    sample.add_argument("--size", type=int, default=64, help="image side in pixels, even, >= 16 (default 64)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.set_defaults(func=_sample_data)

    run = commands.add_parser("run", help="run the whole pipeline on this machine")
    run.add_argument("--config", help="YAML config file (see pipeline/config.py); defaults otherwise")
    run.add_argument("--catalog", help="dataset catalog YAML, overriding the config's")
    run.add_argument("--no-cache", action="store_true", help="re-run every step even if unchanged")
    run.set_defaults(func=_run)

    ingest = commands.add_parser(
        "ingest", help="check a catalog's datasets with the pipeline's own ingestion, before a long run")
    ingest.add_argument("catalog", help="dataset catalog YAML")
    ingest.add_argument("out_dir", help="folder for the examples (Split-*/) and ingest_report/")
    ingest.add_argument("--config", help="YAML config: splits, ingest options, beam_pipeline_args")
    ingest.add_argument("--dry-run", action="store_true", help="write only the report, no examples")
    ingest.add_argument("--workers", type=int, default=0,
                        help="Beam DirectRunner worker processes (multi-processing); default: the config's")
    ingest.set_defaults(func=_ingest)

    schema = commands.add_parser("schema", help="print, check or regenerate schemas/schema.pbtxt")
    mode = schema.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate the file from fakeface/features.py")
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    schema.set_defaults(func=_schema)
    evaluation_cli.add_commands(commands)
    kubeflow_cli.add_commands(commands)
    serving_cli.add_commands(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from fakeface import catalog as catalog_lib
    from fakeface.pipeline import config as config_lib

    try:
        return args.func(args)
    except (catalog_lib.CatalogError, config_lib.ConfigError, FileExistsError) as e:
        print(f"fakeface {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
