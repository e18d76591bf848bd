"""What a reproducible Trainer costs: run_fn with and without op determinism, cached and streamed.

    .venv/bin/python benchmarks/reproducible_training.py [--pipeline-root fakeface_runs/pipelines/fakeface]

Runs the Trainer's run_fn, each time in a fresh process, on the Examples and
Transform graph of a finished run (by default `make run`'s), with that run's
default config, two times in each of three variants, and reports the wall time
of run_fn and whether the two runs of a variant trained the same weights:

  default          the input cached in content-hash order, op determinism on;
  no determinism   the same, tf.config.experimental.enable_op_determinism
                   replaced by a no-op;
  streamed         trainer.input_cache_mb: 0, op determinism on: every epoch
                   read and transformed again, in the order on disk.

The variants take turns, so that a change in the machine's load touches each.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_RUN_FN = """
import json, os, sys, time
import tensorflow as tf
if not {determinism!r}:
    tf.config.experimental.enable_op_determinism = lambda: None
from tfx import v1 as tfx
from tfx.components.util import examples_utils, tfxio_utils
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from fakeface.components.trainer import training

examples = standard_artifacts.Examples()
examples.uri = {examples_uri!r}
examples.split_names = '["train", "eval", "test"]'
examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
accessor = tfx.components.DataAccessor(
    tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
    record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact([examples], []),
    data_view_decode_fn=None)
started = time.perf_counter()
training.run_fn(tfx.components.FnArgs(
    train_files=[os.path.join({examples_uri!r}, "Split-train", "*")],
    eval_files=[os.path.join({examples_uri!r}, "Split-eval", "*")],
    transform_output={transform_uri!r}, serving_model_dir={out!r} + "/serving",
    model_run_dir={out!r} + "/Trainer/model_run/1", custom_config=json.loads({custom!r}),
    data_accessor=accessor))
print("SECONDS", time.perf_counter() - started)
"""


def run_once(pipeline_root: str, custom: dict, determinism: bool, out: str) -> float:
    (examples_uri,) = glob.glob(os.path.join(pipeline_root, "ImageExampleGen", "examples", "*"))
    (transform_uri,) = glob.glob(os.path.join(pipeline_root, "Transform", "transform_graph", "*"))
    code = _RUN_FN.format(determinism=determinism, examples_uri=examples_uri, transform_uri=transform_uri,
                          out=out, custom=json.dumps(custom))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-4000:])
    return float(result.stdout.split("SECONDS")[-1])


def weights(serving_dir: str):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(serving_dir, "variables", "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def same_weights(first: str, second: str) -> bool:
    import numpy as np

    a, b = weights(first), weights(second)
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline-root", default=os.path.join("fakeface_runs", "pipelines", "fakeface"))
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import pipeline

    config = config_lib.load()
    config.runs_root = os.path.dirname(os.path.dirname(os.path.abspath(args.pipeline_root)))
    custom = pipeline.trainer_custom_config(config)
    streamed = json.loads(json.dumps(custom))
    streamed["trainer"]["input_cache_mb"] = 0
    variants = [("default: cached, op determinism", custom, True),
                ("no determinism: cached, no op determinism", custom, False),
                ("streamed: input_cache_mb 0, op determinism", streamed, True)]
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-reproducible-training-")
    load_before = os.getloadavg()[0]
    seconds = {name: [] for name, _, _ in variants}
    for attempt in (1, 2):
        for name, variant, determinism in variants:
            out = os.path.join(workdir, f"{name.split(':')[0].replace(' ', '-')}-{attempt}")
            seconds[name].append(run_once(args.pipeline_root, variant, determinism, out))
    print(f"\nrun_fn on {args.pipeline_root}, default config; {os.cpu_count()} CPUs; load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| variant | run_fn, s (run 1, run 2) | same weights in both runs |")
    print("| --- | --- | --- |")
    for name, _, _ in variants:
        prefix = os.path.join(workdir, name.split(":")[0].replace(" ", "-"))
        same = same_weights(prefix + "-1/serving", prefix + "-2/serving")
        print(f"| {name} | {seconds[name][0]:.1f}, {seconds[name][1]:.1f} | {'yes' if same else 'no'} |")
    print(f"\nworkdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
