"""The `fakeface` command.

    fakeface sample-data OUT_DIR [--per-source N] [--size PX] [--seed S]
    fakeface run [--config FILE] [--catalog FILE] [--no-cache]
    fakeface schema [--write | --check]

TensorFlow is imported only by the subcommands that need it, so the quick
ones stay quick.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


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
    catalog = catalog_lib.load(config.catalog_path)  # fails fast, naming the file

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
    if summary.evaluation_uri:
        labels = {d.name: d.label for d in catalog.datasets}
        print()
        print("Test split, by source:")
        print(results.source_table(summary.evaluation_uri, labels))
    print()
    failed = sorted(node for node, state in summary.executions.items() if state == "FAILED")
    if failed:
        print(f"FAILED: {', '.join(failed)}; the log above says why.", file=sys.stderr)
        return 1
    if summary.pushed:
        print(f"Model blessed and pushed to {summary.pushed_destination}")
    else:
        print(f"Model NOT pushed (blessed: {summary.blessed}); see the Evaluator output at "
              f"{summary.evaluation_uri}")
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

    schema = commands.add_parser("schema", help="print, check or regenerate schemas/schema.pbtxt")
    mode = schema.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate the file from fakeface/features.py")
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    schema.set_defaults(func=_schema)
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
