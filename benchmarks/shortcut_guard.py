"""The shortcut guard's table on the sample data plus a deliberately confounded pair.

    .venv/bin/python benchmarks/shortcut_guard.py [--per-source 40] [--size 64] [--workdir DIR]

Writes `fakeface sample-data` (grouped as catalogs/founding.yaml) and two more
datasets in a group of their own, "confounded", saved the way the classes of
real collections often are: real photos as camera JPEGs (quality 75, EXIF),
fakes as PNGs with a text chunk from the generator. Every file is read back
from disk with fakeface.file_attributes and the guard (fakeface.shortcuts)
runs over the whole catalog, then again after both remedies: metadata
stripped (ingest.strip_metadata) and every file re-encoded at quality 90
(ingest.reencode_jpeg_quality), with the functions ingestion uses.
Prints one row per scope: each attribute's balanced accuracy alone, and the
metadata-only classifier's; a * marks a warning at 0.9.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from typing import Callable, Dict, List, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml  # noqa: E402
from PIL import Image, PngImagePlugin  # noqa: E402

from fakeface import catalog as catalog_lib  # noqa: E402
from fakeface import file_attributes, sample_data, shortcuts  # noqa: E402
from fakeface.components.image_example_gen import inspection  # noqa: E402

WARN_AT = 0.9
SHORT = {"format": "format", "jpeg_quality": "quality", "chroma_subsampling": "subsampling",
         "progressive": "progr.", "resolution_bucket": "resolution", "bytes_per_pixel": "bytes/px",
         "exif": "EXIF", "icc_profile": "ICC", "jpeg_comment": "comment", "png_text": "PNG text",
         shortcuts.CLASSIFIER: "all (classifier)"}


def _camera_jpeg(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0110] = "Phone camera"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75, exif=exif.tobytes())
    return buffer.getvalue()


def _generator_png(image: Image.Image) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "a GAN's sampling script")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_catalog(workdir: str, per_source: int, size: int) -> str:
    """The sample data plus the confounded pair, and a catalog listing all ten datasets."""
    sample_catalog = sample_data.generate(os.path.join(workdir, "sample"), per_source, size)
    with open(sample_catalog, encoding="utf-8") as f:
        entries = yaml.safe_load(f)["datasets"]
    for entry in entries:
        entry["location"] = os.path.join(workdir, "sample", entry["location"])
    pair = (("Confounded_Real", "real", "FFHQ_Orig", _camera_jpeg, "jpg"),
            ("Confounded_Fake", "fake", "Gen1", _generator_png, "png"))
    for name, label, like, save, extension in pair:
        folder = os.path.join(workdir, name)
        os.makedirs(folder, exist_ok=True)
        for index in range(per_source):
            pixels = sample_data.render_image(sample_data.SOURCES_BY_NAME[like], index, size, seed=99)
            with open(os.path.join(folder, f"{index:05d}.{extension}"), "wb") as f:
                f.write(save(Image.fromarray(pixels)))
        entries.append({"name": name, "location": folder, "label": label, "generator": like,
                        "shot": "close-up", "group": "confounded"})
    path = os.path.join(workdir, "catalog.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"datasets": entries}, f, sort_keys=False)
    return path


def observations(catalog: catalog_lib.Catalog, remedy: Callable[[bytes], bytes]) -> List[Tuple[str, object]]:
    rows = []
    for dataset in catalog.datasets:
        for name in sorted(os.listdir(dataset.location)):
            with open(os.path.join(dataset.location, name), "rb") as f:
                rows.append((dataset.name, file_attributes.read(remedy(f.read()))))
    return rows


def print_table(result: shortcuts.GuardResult) -> None:
    columns = list(shortcuts.ATTRIBUTES) + [shortcuts.CLASSIFIER]
    rows: Dict[shortcuts.Scope, Dict[str, float]] = {}
    for figure in result.figures:
        rows.setdefault(figure.scope, {})[figure.attribute] = figure.balanced_accuracy
    print("| scope | " + " | ".join(SHORT[c] for c in columns) + " |")
    print("| --- | " + " | ".join("--:" for _ in columns) + " |")
    for scope, figures in rows.items():
        cells = [f"{figures[c]:.2f}{'*' if figures[c] >= WARN_AT else ''}" if c in figures else "–"
                 for c in columns]
        print(f"| {scope.describe()} | " + " | ".join(cells) + " |")
    print(f"\n{len(result.warnings)} warnings")
    for warning in result.warnings:
        print(f"- {warning.message}")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-shortcut-guard-")
    catalog = catalog_lib.load(write_catalog(workdir, args.per_source, args.size))
    remedies = {
        "as saved": lambda data: data,
        "after ingest.strip_metadata and ingest.reencode_jpeg_quality: 90":
            lambda data: inspection.reencode_jpeg(file_attributes.strip_metadata(data), 90),
    }
    for title, remedy in remedies.items():
        print(f"## {title}\n")
        print_table(shortcuts.guard(shortcuts.count(observations(catalog, remedy)), catalog.datasets, WARN_AT))
    print(f"workdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
