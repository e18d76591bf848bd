"""Serving commands: predict, classify.

A server that cannot be reached, a model that is not loaded, and files that
could not be scored by `predict` are the work failing (exit 1); each file's
reason is listed, on one line. `classify` sorts a file it cannot score into
unreadable/ and fails only with --strict.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import List, Sequence

from fakeface.cli.errors import EXIT_FAILED, EXIT_OK, UsageError, WorkFailed
from fakeface.pipeline.config import DEFAULT_TTA_ANGLES


def _add_target(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--rest", metavar="URL", help="TF Serving REST endpoint, e.g. http://localhost:8501")
    target.add_argument("--grpc", metavar="HOST:PORT", help="TF Serving gRPC endpoint, e.g. localhost:8500")
    target.add_argument("--model", metavar="DIR",
                        help="run in process: a SavedModel folder, or a base folder of numbered versions")
    parser.add_argument("--model-name", default="fakeface", help="served model name (default fakeface)")
    parser.add_argument("--model-version", type=int, help="served version (default: the latest loaded)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per request (default 32)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--retries", type=int, default=3,
                        help="retries of a request after a transient failure, with back-off (default 3)")


def _client(args: argparse.Namespace):
    # TensorFlow's C++ warnings would repeat, unformatted, every per-file error
    # these commands already report; a value the user set wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fakeface.serving import client as client_lib

    client = client_lib.make_client(
        rest=args.rest, grpc=args.grpc, model_dir=args.model, model_name=args.model_name,
        version=args.model_version, timeout=args.timeout, batch_size=args.batch_size,
        retry=client_lib.RetryPolicy(attempts=args.retries + 1))
    # Asking for the model's status first turns "unreachable" or "not loaded"
    # into one clear message before any file is read.
    try:
        client.model_status()
    except client_lib.ServingError:
        client.close()
        raise
    return client


def _check_numbers(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.retries < 0:
        raise UsageError(f"--retries must not be negative, not {args.retries}")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {args.timeout}")


def _write_results(results: Sequence, fmt: str, out) -> None:
    fields = ("path", "fake_probability", "is_fake", "decision", "threshold", "model_version",
              "served_version", "error")
    rows = [{"path": r.path, "fake_probability": r.fake_probability, "is_fake": r.is_fake,
             "decision": r.decision, "threshold": r.threshold, "model_version": r.model_version,
             "served_version": r.served_version, "error": r.error} for r in results]
    if fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    else:
        width = max([len("path")] + [len(r.path) for r in results])
        out.write(f"{'path':<{width}}  {'score':>6}  decision\n")
        for r in results:
            score = f"{r.fake_probability:6.3f}" if r.ok else "     -"
            note = r.decision if r.ok else f"error: {r.error}"
            out.write(f"{r.path:<{width}}  {score}  {note}\n")
        versions = sorted({(r.served_version or "", r.model_version or "") for r in results if r.model_version})
        for served, trained in versions:
            out.write(f"model: served version {served or '(not served)'}, trained {trained}\n")


def _predict(args: argparse.Namespace) -> int:
    from fakeface.serving import client as client_lib

    _check_numbers(args)
    try:
        paths = list(client_lib.iter_files(args.paths))
    except FileNotFoundError as e:
        raise UsageError(e) from e
    if not paths:
        raise UsageError("no files found in " + ", ".join(args.paths))
    try:
        with _client(args) as client:
            results = list(client.predict_files(paths))
    except client_lib.ServingError as e:
        raise WorkFailed(e) from e
    _write_results(results, args.format, sys.stdout)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"fakeface predict: {len(failed)} of {len(results)} file(s) could not be scored",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _angles(text: str) -> List[float]:
    try:
        angles = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of degrees: {text!r}") from None
    if not angles:
        raise argparse.ArgumentTypeError("give at least one angle")
    return angles


def _classify(args: argparse.Namespace) -> int:
    from fakeface.serving import classify as classify_lib
    from fakeface.serving import client as client_lib

    _check_numbers(args)
    try:
        with _client(args) as client:
            summary = classify_lib.classify(client, args.src_dir, args.dst_dir, move=args.move,
                                            tta_angles=args.tta_angles if args.tta else None,
                                            progress=not args.no_progress)
    except client_lib.ServingError as e:
        raise WorkFailed(e) from e
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(e) from e
    for path, reason in summary.failed:
        print(f"fakeface classify: left in place, {path}: {reason}", file=sys.stderr)
    unreadable = summary.unreadable + summary.skipped_unreadable
    if args.strict and unreadable:
        print(f"fakeface classify: --strict: {unreadable} file(s) unreadable, with their reasons in "
              f"{classify_lib.SCORES_FILE}", file=sys.stderr)
    verb = "moved" if args.move else "copied"
    print(f"{summary.placed} file(s) {verb}: {summary.real} real, {summary.fake} fake, "
          f"{summary.unreadable} unreadable; {summary.skipped} already done; "
          f"{len(summary.failed)} left in place. Scores: {os.path.join(args.dst_dir, classify_lib.SCORES_FILE)}")
    if summary.failed or (args.strict and unreadable):
        return EXIT_FAILED
    return EXIT_OK


def register(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict", help="score image files with a served or local model",
        description="Scores each file (folders are walked) and prints path, score and decision.")
    _add_target(predict)
    predict.add_argument("paths", nargs="+", metavar="FILES_OR_FOLDERS")
    predict.add_argument("--format", choices=("table", "csv", "json"), default="table",
                         help="output format (default table)")
    predict.set_defaults(func=_predict)

    classify = subparsers.add_parser(
        "classify", help="sort a folder of images into real/, fake/ and unreadable/",
        description="Copies (or moves) every file below SRC_DIR into DST_DIR/real, DST_DIR/fake or "
                    "DST_DIR/unreadable and writes DST_DIR/scores.csv. Re-running skips what is done; "
                    "no file is ever overwritten (name collisions get ' (1)', ' (2)', ...).")
    classify.add_argument("src_dir", metavar="SRC_DIR")
    classify.add_argument("dst_dir", metavar="DST_DIR")
    _add_target(classify)
    classify.add_argument("--move", action="store_true", help="move the files instead of copying them")
    classify.add_argument("--tta", action="store_true",
                          help="test-time rotation: average the scores of rotated copies (see --tta-angles)")
    classify.add_argument("--tta-angles", type=_angles, default=list(DEFAULT_TTA_ANGLES), metavar="A,B,...",
                          help="rotation angles in degrees for --tta (default -15,0,15; write --tta-angles=-15,0,15)")
    classify.add_argument("--strict", action="store_true",
                          help="exit 1 when any file is unreadable (the default sorts it into unreadable/)")
    classify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    classify.set_defaults(func=_classify)
