"""Evaluation commands: report, experiments."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from fakeface.cli.errors import EXIT_OK, UsageError, WorkFailed


def _resolve(config, which: str):
    from fakeface.pipeline import results

    try:
        if which == "latest":
            summary = results.latest_run(config.metadata_path_resolved, config.pipeline_name)
            if not summary.evaluation_uri:
                raise UsageError(f"the latest run of {config.pipeline_name!r} ({summary.run_id}) has no "
                                 "Evaluator output")
            which = summary.evaluation_uri
        return results.evaluation_inputs(config.metadata_path_resolved,
                                         os.path.abspath(which) if "://" not in which else which)
    except LookupError as e:
        raise UsageError(e) from e


def _report(args: argparse.Namespace) -> int:
    from fakeface.pipeline import config as config_lib

    config = config_lib.load(args.config)
    evaluator = dataclasses.asdict(config.evaluator)
    found = _resolve(config, args.evaluation)
    compared = _resolve(config, args.compare) if args.compare else None

    from fakeface.components.evaluation_report import report

    started = time.monotonic()
    serving_model_dir = config.serving_model_dir_path
    model = report.build(found["examples"], found["model"], found["evaluation"], found["blessing"], evaluator,
                         validation_uri=found["validation"], serving_model_dir=serving_model_dir)
    other = None
    if compared:
        # On the first model's test images, so both see exactly the same ones.
        other = report.build(found["examples"], compared["model"], compared["evaluation"],
                             compared["blessing"], evaluator, validation_uri=found["validation"],
                             serving_model_dir=serving_model_dir)
    path = report.write(model, args.out_dir, other)
    print(f"Report on {len(model.predictions)} test images written in {time.monotonic() - started:.1f} s: {path}")
    for failure in model.failures:
        print(f"  not blessed: {failure}")
    return EXIT_OK


def _chosen_experiments(catalog, only, leave_one_generator_out: bool):
    """The catalog's experiments, with leave-one-generator-out's if asked, narrowed to `only`."""
    from fakeface.pipeline import experiments

    chosen = dict(catalog.experiments)
    if leave_one_generator_out:
        chosen.update(experiments.leave_one_generator_out(catalog))
    if only:
        unknown = sorted(set(only) - set(chosen))
        if unknown:
            raise UsageError(f"unknown experiments {unknown}; {catalog.path} gives {sorted(chosen)}")
        chosen = {name: chosen[name] for name in only}
    if not chosen:
        raise UsageError(f"{catalog.path}: no experiments to run; name some in the catalog's `experiments:` "
                         "section, or pass --leave-one-generator-out (it needs fakes of two generators or more)")
    return chosen


def _experiments(args: argparse.Namespace) -> int:
    from fakeface import catalog as catalog_lib
    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import runs

    config = config_lib.load(args.config)
    catalog = catalog_lib.load(config.catalog_path)
    catalog_lib.check_local_datasets(catalog)
    chosen = _chosen_experiments(catalog, args.only, args.leave_one_generator_out)
    try:
        with runs.hold(config.runs_root, "fakeface experiments"):
            from fakeface.pipeline import experiments, pipeline

            pipeline.ensure_local_backbone(config)
            started = time.monotonic()
            rows = experiments.run(config, chosen, args.out_dir)
    except runs.RunsRootBusy as e:
        raise WorkFailed(e) from e
    except runs.RunsRootUnusable as e:
        raise UsageError(e) from e
    print(f"{len(chosen)} experiments in {time.monotonic() - started:.0f} s. Accuracy per source:")
    with open(os.path.join(args.out_dir, "matrix.md"), encoding="utf-8") as f:
        print(f.read())
    print(f"Matrix: {os.path.join(args.out_dir, 'matrix.html')} (and matrix.csv); one report per experiment "
          f"beside it. {len(rows) - 1} sources.")
    return EXIT_OK


def _names(text: str):
    return [name for name in text.split(",") if name]


def register(commands) -> None:
    report = commands.add_parser("report", help="render the evaluation report of a pipeline run")
    report.add_argument("evaluation", metavar="EVAL_URI|latest",
                        help="an Evaluator output folder, or 'latest' for the latest run's")
    report.add_argument("out_dir", help="folder for report.html, metrics.json and the CSVs")
    report.add_argument("--config", help="YAML config (where the runs' metadata is)")
    report.add_argument("--compare", metavar="EVAL_URI|latest",
                        help="a second Evaluator output, whose model is put side by side on the same test images")
    report.set_defaults(func=_report)

    matrix = commands.add_parser(
        "experiments", help="train the catalog's experiments (the notes' v1/v2/v3 for the founding catalog) "
                            "and render the source x model matrix")
    matrix.add_argument("out_dir", help="folder for matrix.html/.csv/.md and one report per experiment")
    matrix.add_argument("--config", help="YAML config the experiments start from")
    matrix.add_argument("--only", type=_names, metavar="v1,v2", help="run only these named experiments")
    matrix.add_argument("--leave-one-generator-out", action="store_true",
                        help="also train one model per generator without that generator's fakes")
    matrix.set_defaults(func=_experiments)
