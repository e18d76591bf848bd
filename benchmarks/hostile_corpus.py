"""Ingestion of the tests' hostile corpus: every file accounted for, nothing undecodable let in, no run aborted.

    python benchmarks/hostile_corpus.py [--seeds 0 1 2] [--workdir DIR]

For each seed it writes the corpus of tests/image_corpus.py (well-formed
images of every kind, the BMPs TensorFlow misreads, truncations, header
mutations, formats TensorFlow does not read, a FIFO, a broken link, a folder
named x.jpg) beside a few fakes, runs `fakeface ingest` on it as a command
(exit code 0 or it counts as aborted), then decodes every example written
with the model's own decoder and counts those it cannot decode.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import json  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

import image_corpus  # noqa: E402
from fakeface.components.transform import preprocessing  # noqa: E402


def _catalog(workdir: str, seed: int) -> str:
    root = os.path.join(workdir, f"corpus_{seed}")
    image_corpus.write(pathlib.Path(root), seed=seed)
    fakes = os.path.join(workdir, f"fakes_{seed}")
    os.makedirs(fakes)
    for i in range(8):
        picture = image_corpus.picture(np.random.default_rng(10_000 * (seed + 1) + i))
        with open(os.path.join(fakes, f"{i}.png"), "wb") as f:
            f.write(image_corpus.encode(picture, "PNG"))
    path = os.path.join(workdir, f"catalog_{seed}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"datasets": [
            {"name": "Corpus", "location": root, "label": "real", "generator": "camera", "shot": "close-up"},
            {"name": "Fakes", "location": fakes, "label": "fake", "generator": "StyleGAN2", "shot": "close-up"}]}, f)
    return path


def _undecodable(out_dir: str) -> int:
    count = 0
    files = tf.io.gfile.glob(os.path.join(out_dir, "Split-*", "*"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        data = tf.train.Example.FromString(record.numpy()).features.feature["image_bytes"].bytes_list.value[0]
        try:
            preprocessing.decode(tf.constant(data))
        except tf.errors.InvalidArgumentError:
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-corpus-")
    fakeface = os.path.join(os.path.dirname(sys.executable), "fakeface")
    print("| seed | corpus files found | ingested | exact duplicates | quarantined | of which mutants or "
          "truncations ingested | ingested but not decodable by TensorFlow | run aborted |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in args.seeds:
        out_dir = os.path.join(workdir, f"out_{seed}")
        done = subprocess.run([fakeface, "ingest", _catalog(workdir, seed), out_dir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if done.returncode:
            print(f"| {seed} | | | | | | | yes (exit {done.returncode}) |")
            continue
        with open(os.path.join(out_dir, "ingest_report", "report.json"), encoding="utf-8") as f:
            report = json.load(f)
        row = report["datasets"]["Corpus"]
        quarantined = {q["path"] for q in report["quarantine"]}
        folders = [os.path.join(workdir, f"corpus_{seed}", name) for name in ("mutated", "truncated")]
        fuzz_ingested = sum(1 for folder in folders for name in os.listdir(folder)
                            if os.path.join(folder, name) not in quarantined)
        print(f"| {seed} | {row['found']} | {row['ingested']} | {row['duplicates']} | {row['quarantined']} | "
              f"{fuzz_ingested} | {_undecodable(out_dir)} | no |")
    print(f"\nworkdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
