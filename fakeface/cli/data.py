"""Data commands: sample-data, ingest, schema."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from fakeface.cli.errors import EXIT_FAILED, EXIT_OK, UsageError


def _sample_data(args: argparse.Namespace) -> int:
    from fakeface import sample_data

    started = time.monotonic()
    try:
        catalog_path = sample_data.generate(args.out_dir, per_source=args.per_source,
                                            size=args.size, seed=args.seed, workers=args.workers)
    except (ValueError, FileExistsError) as e:
        raise UsageError(e) from e
    count = args.per_source * len(sample_data.SOURCES)
    print(f"Wrote {count} synthetic images ({args.size} px, seed {args.seed}) in "
          f"{time.monotonic() - started:.1f} s; catalog: {catalog_path}")
    return EXIT_OK


def _beam_args(config, workers: int):
    beam_args = list(config.beam_pipeline_args)
    if workers:
        beam_args = [a for a in beam_args if not a.startswith(("--direct_running_mode", "--direct_num_workers"))]
        beam_args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    return beam_args


def _ingest(args: argparse.Namespace) -> int:
    from fakeface import catalog as catalog_lib
    from fakeface.pipeline import config as config_lib

    config = config_lib.load(args.config)
    catalog_lib.check_local_datasets(catalog_lib.load(args.catalog))  # fails fast, naming the file

    from fakeface.components.image_example_gen import driver, executor, ingest, standalone

    driver.catalog_fingerprint(args.catalog)  # every dataset exists and has files
    started = time.monotonic()
    try:
        report = standalone.run(
            args.catalog, args.out_dir, dataclasses.asdict(config.splits), config.ingest,
            _beam_args(config, args.workers), dry_run=args.dry_run)
    except standalone.OutputNotEmpty as e:
        raise UsageError(e) from e
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
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from fakeface import schemas

    if args.write:
        schemas.write_schema()
        print(f"Wrote {schemas.SCHEMA_PATH}")
        return EXIT_OK
    with open(schemas.SCHEMA_PATH, encoding="utf-8") as f:
        current = f.read()
    if args.check:
        if current != schemas.schema_text():
            print(f"{schemas.SCHEMA_PATH} is out of date with fakeface/features.py; "
                  "run `fakeface schema --write`", file=sys.stderr)
            return EXIT_FAILED
        print(f"{schemas.SCHEMA_PATH} is up to date")
        return EXIT_OK
    print(current, end="")
    return EXIT_OK


def register(commands) -> None:
    sample = commands.add_parser("sample-data", help="draw the synthetic sample datasets and their catalog")
    sample.add_argument("out_dir", help="folder to write into (created; must be empty or an earlier sample set)")
    sample.add_argument("--per-source", type=int, default=40, help="images per source (default 40)")
    sample.add_argument("--size", type=int, default=64, help="image side in pixels, even, >= 16 (default 64)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.add_argument("--workers", type=int, default=1,
                        help="processes drawing images, each on one core (default 1); the images are the same")
    sample.set_defaults(func=_sample_data)

    ingest = commands.add_parser(
        "ingest", help="check a catalog's datasets with the pipeline's own ingestion, before a long run")
    ingest.add_argument("catalog", help="dataset catalog YAML")
    ingest.add_argument("out_dir", help="new or empty folder for the examples (Split-*/) and ingest_report/")
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
