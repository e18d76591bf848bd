"""Near-duplicates: recall on copies, false merges of distinct pictures, and the cost at scale.

    .venv/bin/python benchmarks/near_duplicates.py [--per-source 40] [--size 64] [--scale 100000]

Recall and false merges. `fakeface sample-data` images (--per-source per
source, --size px), each with five copies: re-encoded as JPEG 70, JPEG 95 and
PNG, and resized to 0.5x and 0.75x (Lanczos) and saved as JPEG 90. Every file
is decoded with TensorFlow, as ingestion decodes it, and hashed with today's
8x8 average hash (defined here, for comparison) and the 64-bit DCT hash
(fakeface.near_duplicates.perceptual_hash). Originals and copies are then
clustered together with cluster_ids at each distance:
  recall       share of copies in their original's cluster, per kind of copy;
  false merge  share of originals whose cluster holds another original.

Scale. --scale distinct sample pictures (rendered pixels, not files) are
hashed, then clustered: wall time and peak memory (tracemalloc) of
cluster_ids, and the share of pictures joined to another and the largest
cluster at that size. The hashes are kept in --workdir, so that a second run
with the same --workdir only clusters.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import sys
import tempfile
import time
import tracemalloc
from typing import Callable, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from fakeface import catalog as catalog_lib  # noqa: E402
from fakeface import near_duplicates, sample_data  # noqa: E402
from fakeface.components.image_example_gen import inspection  # noqa: E402

COPIES = ("JPEG 70", "JPEG 95", "PNG", "0.5x", "0.75x")
DISTANCES = (0, 1, 2, 3, 4, 5, 6, 8)
SCALE_DISTANCES = (2, 3, 4)


def average_hash(pixels: np.ndarray) -> str:
    """The 8x8 average hash ingestion once used: one bit per box-averaged cell, set when above the mean."""
    cells = np.asarray(Image.fromarray(pixels).convert("L").resize((8, 8), Image.BOX), dtype=np.float64).ravel()
    return f"{int(''.join('1' if v > cells.mean() else '0' for v in cells), 2):016x}"


def ingestion_hash(pixels: np.ndarray) -> str:
    """The DCT hash as ingestion computes it: its decoding graph's thumbnail (TensorFlow's Lanczos)."""
    return near_duplicates.hash_of_thumbnail(inspection.thumbnail(tf.constant(pixels)).numpy())


HASHES: Dict[str, Callable[[np.ndarray], str]] = {
    "average hash (8x8)": average_hash,
    "DCT hash (Pillow's Lanczos: near_duplicates.perceptual_hash)": near_duplicates.perceptual_hash,
    "DCT hash (TensorFlow's Lanczos: ingestion)": ingestion_hash,
}


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def copies_of(data: bytes) -> Dict[str, bytes]:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    resized = {
        "0.5x": image.resize((width // 2, height // 2), Image.LANCZOS),
        "0.75x": image.resize((width * 3 // 4, height * 3 // 4), Image.LANCZOS),
    }
    return {"JPEG 70": _encode(image, "JPEG", quality=70), "JPEG 95": _encode(image, "JPEG", quality=95),
            "PNG": _encode(image, "PNG"),
            **{kind: _encode(img, "JPEG", quality=90) for kind, img in resized.items()}}


def decode(data: bytes) -> np.ndarray:
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def sample_files(workdir: str, per_source: int, size: int) -> List[str]:
    catalog = catalog_lib.load(sample_data.generate(os.path.join(workdir, "sample"), per_source, size))
    return [os.path.join(d.location, name) for d in catalog.datasets for name in sorted(os.listdir(d.location))]


def recall_and_false_merges(paths: List[str]) -> None:
    originals = [decode(open(p, "rb").read()) for p in paths]
    copies = [{kind: decode(data) for kind, data in copies_of(open(p, "rb").read()).items()} for p in paths]
    print(f"{len(paths)} originals, {len(COPIES)} copies each; recall per copy kind, false merges of originals\n")
    print("| hash | bits | " + " | ".join(COPIES) + " | all copies | false merge |")
    print("| --- | --: | " + " | ".join("--:" for _ in COPIES) + " | --: | --: |")
    for name, hash_fn in HASHES.items():
        hashes = [hash_fn(p) for p in originals]
        for per_image in copies:
            hashes.extend(hash_fn(per_image[kind]) for kind in COPIES)
        n = len(originals)
        for bits in DISTANCES:
            clusters = near_duplicates.cluster_ids(hashes, bits)
            own = clusters[:n]
            kept = {kind: np.mean([clusters[n + i * len(COPIES) + k] == own[i] for i in range(n)])
                    for k, kind in enumerate(COPIES)}
            originals_per_cluster = collections.Counter(own)
            merged = np.mean([originals_per_cluster[c] > 1 for c in own])
            print(f"| {name} | {bits} | " + " | ".join(f"{100 * kept[k]:.1f}%" for k in COPIES)
                  + f" | {100 * np.mean(list(kept.values())):.1f}% | {100 * merged:.1f}% |")
    print()


def scale_hashes(count: int, size: int, workdir: str) -> Dict[str, List[str]]:
    """Both hashes of `count` distinct sample pictures, kept in `workdir` for the next run."""
    path = os.path.join(workdir, f"hashes-{count}-{size}px.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    started = time.perf_counter()
    hashes: Dict[str, List[str]] = {name: [] for name in HASHES}
    for index in range(-(-count // len(sample_data.SOURCES))):
        for source in sample_data.SOURCES:
            pixels = sample_data.render_image(source, index, size, seed=1)
            for name, hash_fn in HASHES.items():
                hashes[name].append(hash_fn(pixels))
    hashes = {name: values[:count] for name, values in hashes.items()}
    print(f"{count} distinct pictures ({size} px) rendered and hashed in {time.perf_counter() - started:.0f} s\n")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(hashes, f)
    return hashes


def at_scale(hashes: Dict[str, List[str]]) -> None:
    print("| hash | hashes | bits | cluster_ids time | peak memory | pictures joined to another | largest cluster |")
    print("| --- | --: | --: | --: | --: | --: | --: |")
    for name, values in hashes.items():
        count = len(values)
        for n in sorted({count // 4, count // 2, count}):
            for bits in SCALE_DISTANCES:
                tracemalloc.start()
                started = time.perf_counter()
                clusters = near_duplicates.cluster_ids(values[:n], bits)
                seconds = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                sizes = np.unique(clusters, return_counts=True)[1]
                joined = sizes[sizes > 1].sum() / n
                print(f"| {name} | {n} | {bits} | {seconds:.2f} s | {peak / 2**20:.0f} MiB | "
                      f"{100 * joined:.1f}% | {sizes.max()} |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scale", type=int, default=100_000, help="distinct pictures to cluster; 0: skip")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores\n")
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-near-duplicates-")
    recall_and_false_merges(sample_files(workdir, args.per_source, args.size))
    if args.scale:
        at_scale(scale_hashes(args.scale, args.size, workdir))
    print(f"load average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
