"""Driver of ImageExampleGen: fingerprints every file a catalog points at.

TFX caches ExampleGen on its input fingerprint. The stock file-based driver
only sees files under `input_base`, but a catalog's datasets live anywhere
(other folders, buckets), so this driver fingerprints the catalog itself plus
the name, size and modification time of every file of every dataset. Adding,
removing or touching one image re-runs ingestion; an unchanged set is a cache
hit. It also fails fast, before any Beam work, on a catalog whose datasets are
missing or empty.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, Optional, Tuple

from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import input_processor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2

from fakeface import catalog as catalog_lib
from fakeface.components.image_example_gen import listing
from fakeface.components.image_example_gen.records import Quarantined


def catalog_fingerprint(path: str) -> str:
    catalog = catalog_lib.load(path)
    with fileio.open(path, "rb") as f:
        lines = [f"catalog:{path},sha256:{hashlib.sha256(f.read()).hexdigest()}"]
    for dataset in catalog.datasets:
        num_files = total_bytes = xor_mtime = sum_mtime = 0
        for entry in listing.list_dataset(dataset):
            num_files += 1
            if isinstance(entry, Quarantined):
                continue  # not a file that can be read (a broken link, a FIFO): ingestion quarantines it
            try:
                stat = fileio.stat(entry.path)
            except fileio.NotFoundError:
                continue  # gone since it was listed: ingestion quarantines it
            total_bytes += stat.length
            mtime = int(stat.mtime_nsec // 1_000_000_000)
            xor_mtime ^= mtime
            sum_mtime += mtime
        if not num_files:
            raise catalog_lib.CatalogError(
                f"{path}: dataset {dataset.name!r} has no files at {dataset.location}")
        lines.append(f"dataset:{dataset.name},num_files:{num_files},total_bytes:{total_bytes},"
                     f"xor_checksum:{xor_mtime},sum_checksum:{sum_mtime}")
    return "\n".join(lines)


class CatalogInputProcessor(input_processor.InputProcessor):
    """The single input split is the catalog file; there are no spans."""

    def __init__(self, input_base_uri: str, splits: Iterable[example_gen_pb2.Input.Split],
                 range_config: Optional[range_config_pb2.RangeConfig] = None):
        super().__init__(splits=splits, range_config=range_config)
        self._splits = list(splits)
        if len(self._splits) != 1:
            raise ValueError("ImageExampleGen takes exactly one input split: the catalog file")
        self._catalog_path = os.path.join(input_base_uri, self._splits[0].pattern)

    def resolve_span_and_version(self) -> Tuple[int, Optional[int]]:
        return 0, None

    def get_pattern_for_span_version(self, pattern: str, span: int, version: Optional[int]) -> str:
        return pattern

    def get_latest_span(self) -> int:
        return 0

    def get_input_fingerprint(self, span: int, version: Optional[int]) -> Optional[str]:
        return catalog_fingerprint(self._catalog_path)


class CatalogDriver(example_gen_driver.Driver):

    def get_input_processor(self, splits, range_config=None, input_base_uri=None):
        return CatalogInputProcessor(input_base_uri, splits, range_config)
