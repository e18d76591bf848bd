"""Ingestion throughput: the pipeline's Beam ingestion against a plain loop and the decode floor.

    python benchmarks/ingest_throughput.py [--images-256 N] [--images-1024 N] [--workdir DIR]

For JPEGs of about 256 and 1024 px it measures, in images per second:
  floor       read + full Pillow decode, one process: what any ingestion must pay
  decode graph read + ingestion's own TensorFlow graph (the image contract's
              decode and the perceptual hash's thumbnail), one process: the
              part of ingestion's work that is the model's decoder
  plain loop  read + Pillow verify (full decode) + write a TFRecord, one process
  fakeface    `fakeface ingest` (standalone.run): DirectRunner with one
              worker, then multi-processing with two, examples and report written.
              Beam, TFX and the decoder process cost seconds per run whatever
              the data, so it also reports the steady rate, net of a run on 8
              images: (N - 8) / (T_N - T_8), which is what a large dataset sees.

It prints the aims' ratios: two workers' steady rate against one's (aim: at
least 1.7), and each one's CPU time per image against the floor's, which is
the time per core (aim: at most 1.5). CPU time counts every process of the run
(Beam workers, decoder processes) and holds when other work shares the
machine; wall-clock rates do not.
"""

import argparse
import io
import os
import resource
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
from fakeface.components.image_example_gen import inspection, listing, standalone  # noqa: E402
from fakeface.pipeline import config as config_lib  # noqa: E402


def make_dataset(root: str, count: int, size: int) -> str:
    """`count` sample JPEGs of `size` px, half real, half fake, and their catalog."""
    per_source = max(1, count // len(sample_data.SOURCES))
    return sample_data.generate(root, per_source=per_source, size=size, seed=11)


def files_of(catalog_path: str):
    return [os.path.join(root, name)
            for dataset in catalog_lib.load(catalog_path).datasets
            for root, _, names in os.walk(dataset.location) for name in sorted(names)]


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (Beam workers, decoder processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(work):
    """(wall seconds, CPU seconds, result) of work()."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = work()
    return time.perf_counter() - wall, _cpu_seconds() - cpu, result


def floor(paths):
    def work():
        for path in paths:
            with open(path, "rb") as f:
                Image.open(io.BytesIO(f.read())).load()
    return _timed(work)[:2]


def decode_graph(paths, max_pixels: int):
    describe = inspection._describer(max_pixels)  # pylint: disable=protected-access
    with open(paths[0], "rb") as f:
        describe(tf.constant([f.read()]))  # traced outside the timing

    def work():
        for start in range(0, len(paths), listing.BATCH_FILES):
            datas = []
            for path in paths[start:start + listing.BATCH_FILES]:
                with open(path, "rb") as f:
                    datas.append(f.read())
            describe(tf.constant(datas))
    return _timed(work)[:2]


def plain_loop(paths, out_path: str):
    def work():
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
    return _timed(work)[:2]


def fakeface_ingest(catalog_path: str, out_dir: str, beam_args):
    """(images, wall seconds, CPU seconds) of one `fakeface ingest` run."""
    config = config_lib.PipelineConfig()
    shutil.rmtree(out_dir, ignore_errors=True)
    wall, cpu, report = _timed(lambda: standalone.run(
        catalog_path, out_dir, {"train": 56, "eval": 24, "test": 20}, config.ingest, beam_args))
    return report["totals"]["found"], wall, cpu


def _measure(workdir: str, size: int, count: int):
    one_worker = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    two_workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    catalog_path = make_dataset(os.path.join(workdir, f"data{size}"), count, size)
    paths = files_of(catalog_path)
    floor(paths[: min(50, len(paths))])  # warm the page cache and Pillow
    result = {"size": size, "images": len(paths), "MB": sum(os.path.getsize(p) for p in paths) / 1e6,
              "floor": floor(paths), "graph": decode_graph(paths, config_lib.PipelineConfig().ingest.max_pixels),
              "plain": plain_loop(paths, os.path.join(workdir, f"plain{size}.tfrecord"))}
    small_catalog = sample_data.generate(os.path.join(workdir, f"small{size}"), per_source=1, size=size, seed=12)
    for name, beam_args in (("fakeface_1", one_worker), ("fakeface_2", two_workers)):
        out_dir = os.path.join(workdir, f"out{size}_{name}")
        small_n, small_wall, small_cpu = fakeface_ingest(small_catalog, out_dir + "_small", beam_args)
        n, wall, cpu = fakeface_ingest(catalog_path, out_dir, beam_args)
        result[name] = (n / wall, (n - small_n) / (wall - small_wall), (cpu - small_cpu) / (n - small_n))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-256", type=int, default=800)
    parser.add_argument("--images-1024", type=int, default=160)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-ingest-bench-")
    load_before = os.getloadavg()[0]
    rows = [_measure(workdir, size, count) for size, count in ((256, args.images_256), (1024, args.images_1024))
            if count]
    print(f"\nload average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {os.cpu_count()} cores")
    print("\nImages per second (wall clock):\n")
    print("| JPEG size | images (MB) | floor: read+decode | plain loop | fakeface 1 worker: run (steady) | "
          "fakeface 2 workers: run (steady) | 2 workers vs 1, steady |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        (floor_wall, _), (plain_wall, _) = r["floor"], r["plain"]
        one, two = r["fakeface_1"], r["fakeface_2"]
        print(f"| {r['size']} px | {r['images']} ({r['MB']:.0f}) | {r['images'] / floor_wall:.0f}/s | "
              f"{r['images'] / plain_wall:.0f}/s | {one[0]:.0f}/s ({one[1]:.0f}/s) | {two[0]:.0f}/s ({two[1]:.0f}/s) | "
              f"{two[1] / one[1]:.2f}x |")
    print("\nCPU time per image (all processes; steady for fakeface), and against the floor:\n")
    print("| JPEG size | floor | decode graph | plain loop | fakeface 1 worker | fakeface 2 workers |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        base = r["floor"][1] / r["images"]
        cells = [r["graph"][1] / r["images"], r["plain"][1] / r["images"], r["fakeface_1"][2], r["fakeface_2"][2]]
        print(f"| {r['size']} px | {base * 1e3:.2f} ms | "
              + " | ".join(f"{c * 1e3:.2f} ms ({c / base:.2f}x)" for c in cells) + " |")
    print(f"\nworkdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
