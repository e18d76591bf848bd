"""The whole pipeline as the data grows: each step's peak memory, wall time and images per second.

    python benchmarks/scale_memory.py [--images 1000 4000 16000] [--size 512] [--epochs N] [--workdir DIR]

For each catalog size it draws the synthetic sample data (`fakeface sample-data
--per-source N/8 --size PX --workers CORES`, kept in WORKDIR and reused), then runs the
default pipeline on it one step per process (TFX partial runs on the run's
own ML Metadata), so that a step's peak memory is its own and not what an
earlier step left behind. Peak RSS is the kernel's high-water mark of the
step's process or of its largest child (`ru_maxrss`, what /usr/bin/time
reports): exact, where sampling misses short peaks by tens of MB between runs
of one input. Beside it, the largest sum of the step's process and its
children (ingestion's decoding sandbox, Beam workers), sampled every 0.1 s:
what the machine holds at once. Both include the about 1 GB that importing
TFX and TensorFlow costs any step. Wall time is the step's run as the runner logs it,
without that import and without compiling the pipeline.

Images per second count the images a step reads: every image of the catalog
(ImageExampleGen, StatisticsGen), the train and eval splits once per epoch
(Trainer), the test split (Evaluator, EvaluationReport). Transform reads
none: its preprocessing_fn has no analyzer and nothing is materialised (the
Trainer applies the graph), so it only builds and saves the graph.

The last table compares each step's peak RSS at the largest size with the
smallest, both measures: the aim is at most 100 MB more.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time

import psutil

REPORTED = ("ImageExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "EvaluationReport")
SOURCES = 8  # the sample data's sources


class _StepStart(logging.Handler):
    """When the LocalDagRunner says the node starts, after compiling the pipeline."""

    def __init__(self, step: str):
        super().__init__(logging.INFO)
        self._message = f"Component {step} is running."
        self.time = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if not self.time and record.getMessage() == self._message:
            self.time = time.monotonic()


def _run_step(config_path: str, step: str) -> None:
    """In the step's own process: runs one node of the pipeline and prints its wall time as JSON."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tfx import v1 as tfx
    from tfx.orchestration.pipeline import RunOptions

    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import pipeline, reader_batches

    config = config_lib.load(config_path)
    reader_batches.by_bytes()  # as `fakeface run` does
    pipeline.ensure_local_backbone(config)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path_resolved)
    start = _StepStart(step)
    logging.getLogger("absl").setLevel(logging.INFO)
    logging.getLogger("absl").addHandler(start)
    tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(config, metadata),
                                           run_options=RunOptions(from_nodes=[step], to_nodes=[step]))
    print(json.dumps({"step": step, "seconds": time.monotonic() - start.time}), flush=True)


def _steps(config_path: str):
    """The default pipeline's nodes, in the order the runner runs them."""
    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import pipeline

    return [node.id for node in pipeline.create_pipeline(config_lib.load(config_path)).components]


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process] + process.children(recursive=True):
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass  # ended between the listing and the reading
    return total


def _measured(config_path: str, step: str, log_path: str):
    """(peak RSS, sampled peak of all its processes together, both in bytes; wall seconds) of one step
    in its own process."""
    with open(log_path, "a", encoding="utf-8") as log:
        child = subprocess.Popen([sys.executable, __file__, "--step", step, "--config", config_path],
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        process, together = psutil.Process(child.pid), [0]

        def sample():
            while not os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                try:
                    together[0] = max(together[0], _tree_rss(process))
                except psutil.Error:
                    return
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        output = child.stdout.read()
        sampler.join()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"step {step} failed (exit {child.returncode}); see {log_path}")
    return usage.ru_maxrss * 1024, together[0], json.loads(output.strip().splitlines()[-1])["seconds"]


def _sample_data(workdir: str, images: int, size: int) -> str:
    folder = os.path.join(workdir, f"data_{images}_{size}")
    catalog_path = os.path.join(folder, "catalog.yaml")
    if not os.path.exists(catalog_path):
        with open(os.path.join(workdir, "sample_data.log"), "a", encoding="utf-8") as log:
            subprocess.run([os.path.join(os.path.dirname(sys.executable), "fakeface"), "sample-data", folder,
                            "--per-source", str(images // SOURCES), "--size", str(size),
                            "--workers", str(os.cpu_count() or 1)],
                           stdout=log, stderr=log, check=True)
    return catalog_path


def _split_counts(runs_root: str):
    from fakeface.pipeline import results

    summary = results.latest_run(os.path.join(runs_root, "metadata.sqlite"), "fakeface")
    with open(os.path.join(os.path.dirname(summary.ingest_report), "report.json"), encoding="utf-8") as f:
        totals = json.load(f)["datasets"].values()
    return {split: sum(row["splits"].get(split, 0) for row in totals) for split in ("train", "eval", "test")}


def _read_images(step: str, splits, epochs: int) -> int:
    if step == "Transform":
        return 0
    if step == "Trainer":
        return (splits["train"] + splits["eval"]) * epochs
    if step in ("Evaluator", "EvaluationReport"):
        return splits["test"]
    return sum(splits.values())


def _run_size(workdir: str, images: int, size: int, epochs: int):
    import yaml

    catalog_path = _sample_data(workdir, images, size)
    runs_root = os.path.join(workdir, f"runs_{images}_{size}_{time.strftime('%Y%m%d%H%M%S')}")
    os.makedirs(runs_root)
    config_path = os.path.join(runs_root, "config.yaml")
    overrides = {"runs_root": runs_root, "catalog": catalog_path}
    if epochs:
        overrides["trainer"] = {"epochs": epochs}
    with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(overrides, f)
    measured = {}
    for step in _steps(config_path):
        measured[step] = _measured(config_path, step, os.path.join(runs_root, "steps.log"))
        peak, together, seconds = measured[step]
        print(f"  {images} images, {step}: peak RSS {peak / 2**20:.0f} MiB "
              f"({together / 2**20:.0f} MiB all processes, sampled), {seconds:.0f} s", flush=True)
    return measured, _split_counts(runs_root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=0, help="trainer.epochs; 0 keeps the config's default")
    parser.add_argument("--workdir", default=None,
                        help="where the data and the runs go, kept and reused; default: a new temporary folder")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        _run_step(args.config, args.step)
        return 0
    from fakeface.pipeline import config as config_lib

    epochs = args.epochs or config_lib.TrainerConfig().epochs
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-scale-")
    os.makedirs(workdir, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
    results = {n: _run_size(workdir, n, args.size, args.epochs) for n in args.images}
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("\n| step | " + " | ".join(f"{n} images: peak RSS (all processes), wall, images/s" for n in args.images)
          + " |")
    print("| --- |" + " --- |" * len(args.images))
    for step in REPORTED:
        cells = []
        for n in args.images:
            (peak, together, seconds), splits = results[n][0][step], results[n][1]
            read = _read_images(step, splits, epochs)
            cells.append(f"{peak / 2**20:,.0f} MiB ({together / 2**20:,.0f}), {seconds:,.0f} s, "
                         + (f"{read / seconds:,.0f}/s" if read else "–"))
        print(f"| {step} | " + " | ".join(cells) + " |")
    smallest, largest = min(args.images), max(args.images)
    print(f"\n| step | peak RSS at {largest} minus at {smallest} images | all processes, sampled |")
    print("| --- | ---: | ---: |")
    for step in results[largest][0]:
        growth = [results[largest][0][step][i] - results[smallest][0][step][i] for i in (0, 1)]
        print(f"| {step} | {growth[0] / 2**20:+,.0f} MiB | {growth[1] / 2**20:+,.0f} MiB |")
    print(f"\nworkdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
