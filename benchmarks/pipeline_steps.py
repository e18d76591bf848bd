"""Wall time of every pipeline step, from ML Metadata: what each step of a default run costs.

    .venv/bin/python benchmarks/pipeline_steps.py [--runs-root DIR] [--per-source N]

Draws the sample data (40 images per source by default, as `make run`),
runs the default pipeline in a fresh runs root with the local runner, as
`fakeface run` does, then once more with nothing changed, and prints for each
run every step's time from its execution's creation to its last update in ML
Metadata, and the run's wall time. Steps run one after another, so the step
times add up to the run's time less the runner's own work between steps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ml_metadata.metadata_store import metadata_store  # noqa: E402
from ml_metadata.proto import metadata_store_pb2  # noqa: E402

from fakeface import sample_data  # noqa: E402
from fakeface.pipeline import config as config_lib  # noqa: E402
from fakeface.pipeline import local_runner, pipeline, results  # noqa: E402


def step_seconds(metadata_path: str, pipeline_name: str, run_id: str) -> dict:
    """Step -> (state, seconds) of the run `run_id`, from ML Metadata."""
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(connection)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    states = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
    found = {}
    for execution in store.get_executions_by_context(run.id):
        node = next(c.name.split(".", 1)[1] for c in store.get_contexts_by_execution(execution.id)
                    if c.name.startswith(pipeline_name + "."))
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        found[node] = (states[execution.last_known_state], seconds)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-root", help="a fresh folder for the runs (default: a temporary one)")
    parser.add_argument("--per-source", type=int, default=40)
    args = parser.parse_args()
    runs_root = args.runs_root or tempfile.mkdtemp(prefix="fakeface-steps-")
    config = config_lib.from_dict({"runs_root": runs_root})
    sample_data.generate(config.sample_data_dir, per_source=args.per_source)
    pipeline.ensure_local_backbone(config)
    print(f"runs root {runs_root}, {args.per_source} images per source; load average {os.getloadavg()}")
    for label in ("fresh run", "nothing changed"):
        started = time.monotonic()
        local_runner.run(config)
        elapsed = time.monotonic() - started
        summary = results.latest_run(config.metadata_path_resolved, config.pipeline_name)
        steps = step_seconds(config.metadata_path_resolved, config.pipeline_name, summary.run_id)
        print(f"\n{label}: {elapsed:.1f} s, {len(steps)} steps")
        for node, (state, seconds) in sorted(steps.items(), key=lambda kv: -kv[1][1]):
            print(f"  {node:<22} {state.lower():<9} {seconds:7.1f} s")
        print(f"  {'sum of the steps':<32} {sum(s for _, s in steps.values()):7.1f} s")
    print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
    main()
