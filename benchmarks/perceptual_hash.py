"""How well the perceptual hash that splits the data keeps re-encoded and resized copies together.

    python benchmarks/perceptual_hash.py [--per-source N] [--sizes 64 256] [--workdir DIR]

For the sample data at each size, every image is also saved as JPEG 70 at half
size, JPEG 95 and PNG; it prints the share of those copies whose hash, as
ingestion computes it (inspection.py), equals the original's, so that they
land in the same split, and how many distinct images got distinct hashes.
"""

import argparse
import io
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from fakeface import catalog as catalog_lib  # noqa: E402
from fakeface import sample_data  # noqa: E402
from fakeface.components.image_example_gen import inspection  # noqa: E402
from fakeface.components.image_example_gen.records import FileRef  # noqa: E402
from fakeface.pipeline.config import IngestConfig  # noqa: E402

COPIES = {
    "JPEG 70 at half size": lambda image: _encode(image.resize((image.width // 2, image.height // 2), Image.LANCZOS),
                                                  "JPEG", quality=70),
    "JPEG 95": lambda image: _encode(image, "JPEG", quality=95),
    "PNG": lambda image: _encode(image, "PNG"),
}


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _hashes(paths, config: IngestConfig):
    refs = [FileRef("sample", path, os.path.basename(path), os.path.getsize(path)) for path in paths]
    return [r.perceptual_hash for start in range(0, len(refs), 64) for r in inspection.inspect(refs[start:start + 64],
                                                                                                 config)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-phash-")
    config = IngestConfig(min_side=1)
    print("| sample data | images | " + " | ".join(f"{name}: same hash" for name in COPIES) + " | all copies | "
          "distinct hashes |")
    print("| --- | --- |" + " --- |" * (len(COPIES) + 2))
    for size in args.sizes:
        catalog_path = sample_data.generate(os.path.join(workdir, f"data{size}"), per_source=args.per_source,
                                            size=size, seed=0)
        originals = sorted(os.path.join(root, name) for d in catalog_lib.load(catalog_path).datasets
                           for root, _, names in os.walk(d.location) for name in names)
        hashes = _hashes(originals, config)
        kept = {}
        for name, make in COPIES.items():
            copies = []
            for number, path in enumerate(originals):
                copy_path = os.path.join(workdir, f"copy{size}_{len(kept)}_{number}")
                with open(copy_path, "wb") as f:
                    f.write(make(Image.open(path).convert("RGB")))
                copies.append(copy_path)
            kept[name] = sum(a == b for a, b in zip(hashes, _hashes(copies, config)))
        total = len(originals) * len(COPIES)
        print(f"| {args.per_source} per source, {size} px | {len(originals)} | "
              + " | ".join(f"{n / len(originals):.0%}" for n in kept.values())
              + f" | {sum(kept.values()) / total:.0%} | {len(set(hashes))} of {len(hashes)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
