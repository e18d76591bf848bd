"""Ingestion throughput: the pipeline's Beam ingestion against a plain loop and the decode floor.

    python benchmarks/ingest_throughput.py [--images-256 N] [--images-1024 N] [--workdir DIR]

For JPEGs of about 256 and 1024 px it measures, in images per second:
  floor       read + full Pillow decode, one process: what any ingestion must pay
  plain loop  read + Pillow verify (full decode) + write a TFRecord, one process
  fakeface    `fakeface ingest` (standalone.run): DirectRunner with one
              worker, then multi-processing with two, examples and report written.
              Beam and TFX cost a few seconds per run whatever the data, so it
              also reports the steady rate, net of a run on 8 images:
              (N - 8) / (T_N - T_8), which is what a large dataset sees.
"""

import argparse
import io
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from fakeface import catalog as catalog_lib  # noqa: E402
from fakeface import sample_data  # noqa: E402
from fakeface.components.image_example_gen import standalone  # noqa: E402
from fakeface.pipeline import config as config_lib  # noqa: E402


def make_dataset(root: str, count: int, size: int) -> str:
    """`count` sample JPEGs of `size` px, half real, half fake, and their catalog."""
    per_source = max(1, count // len(sample_data.SOURCES))
    return sample_data.generate(root, per_source=per_source, size=size, seed=11)


def files_of(catalog_path: str):
    return [os.path.join(root, name)
            for dataset in catalog_lib.load(catalog_path).datasets
            for root, _, names in os.walk(dataset.location) for name in sorted(names)]


def floor(paths) -> float:
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            Image.open(io.BytesIO(f.read())).load()
    return len(paths) / (time.perf_counter() - started)


def plain_loop(paths, out_path: str) -> float:
    started = time.perf_counter()
    with tf.io.TFRecordWriter(out_path) as writer:
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            image = Image.open(io.BytesIO(data))
            image.load()
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[image.width])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1 if "gen" in path else 0])),
            }))
            writer.write(example.SerializeToString())
    return len(paths) / (time.perf_counter() - started)


def fakeface_ingest(catalog_path: str, out_dir: str, beam_args):
    """(images, seconds) of one `fakeface ingest` run."""
    config = config_lib.PipelineConfig()
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.perf_counter()
    report = standalone.run(catalog_path, out_dir, {"train": 56, "eval": 24, "test": 20}, config.ingest, beam_args)
    return report["totals"]["found"], time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-256", type=int, default=800)
    parser.add_argument("--images-1024", type=int, default=160)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-ingest-bench-")
    one_worker = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    two_workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    rows = []
    for size, count in ((256, args.images_256), (1024, args.images_1024)):
        if not count:
            continue
        catalog_path = make_dataset(os.path.join(workdir, f"data{size}"), count, size)
        paths = files_of(catalog_path)
        megabytes = sum(os.path.getsize(p) for p in paths) / 1e6
        floor(paths[: min(50, len(paths))])  # warm the page cache and Pillow
        result = {"size": size, "images": len(paths), "MB": megabytes, "floor": floor(paths),
                  "plain": plain_loop(paths, os.path.join(workdir, f"plain{size}.tfrecord"))}
        small_catalog = sample_data.generate(os.path.join(workdir, f"small{size}"), per_source=1,
                                             size=size, seed=12)
        for name, beam_args in (("fakeface_1", one_worker), ("fakeface_2", two_workers)):
            out_dir = os.path.join(workdir, f"out{size}_{name}")
            small_n, small_t = fakeface_ingest(small_catalog, out_dir + "_small", beam_args)
            n, t = fakeface_ingest(catalog_path, out_dir, beam_args)
            result[name] = n / t
            result[name + "_steady"] = (n - small_n) / (t - small_t)
        rows.append(result)
    print()
    print("| JPEG size | images (MB) | floor: read+decode | plain loop | fakeface 1 worker: run (steady) | "
          "fakeface 2 workers: run (steady) | steady, 1 worker vs floor |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['size']} px | {r['images']} ({r['MB']:.0f}) | {r['floor']:.0f}/s | {r['plain']:.0f}/s | "
              f"{r['fakeface_1']:.0f}/s ({r['fakeface_1_steady']:.0f}/s) | "
              f"{r['fakeface_2']:.0f}/s ({r['fakeface_2_steady']:.0f}/s) | "
              f"{r['floor'] / r['fakeface_1_steady']:.2f}x the time |")
    print(f"\nworkdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
