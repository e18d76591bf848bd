"""Every entry of a dataset, listed once, with what it is.

Local folders are walked with the operating system, which tells a regular
file from a FIFO, socket, device or broken link without opening it: only
regular files are ever read, everything else is quarantined with what it is.
Buckets and other tf.io.gfile URLs hold regular files only.

The driver's input fingerprint and ingestion list the same entries.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import stat
from typing import Iterator, List, Set, Tuple, Union

import tensorflow as tf

from fakeface import catalog as catalog_lib
from fakeface.components.image_example_gen.records import FileRef, Quarantined

Entry = Union[FileRef, Quarantined]
# A file's bytes are read whole: a batch of files handed to one worker at a
# time stays under both bounds (a single larger file is a batch of its own).
BATCH_FILES = 64
BATCH_BYTES = 32 * 1024 * 1024

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def is_local(path: str) -> bool:
    return "://" not in path


def _relative_path(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else os.path.basename(path)


def _local_entry(dataset: catalog_lib.Dataset, path: str) -> Entry:
    try:
        status = os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            return Quarantined(dataset.name, path, f"broken link to {os.readlink(path)}")
        return Quarantined(dataset.name, path, f"unreadable: {e.strerror or e}")
    for test, kind in _KINDS:
        if test(status.st_mode):
            return Quarantined(dataset.name, path, f"not a regular file: {kind}")
    return FileRef(dataset.name, path, _relative_path(path, dataset.root), status.st_size)


def _walk_local(dataset: catalog_lib.Dataset) -> Iterator[Entry]:
    """Every non-folder below the dataset's folder, in a stable order.

    Folder links are followed, each folder once; a folder that cannot be
    listed is an entry of its own, so that what it holds is not silently lost.
    """
    unlisted: List[OSError] = []
    seen: Set[Tuple[int, int]] = set()
    for folder, dirs, files in os.walk(dataset.location, onerror=unlisted.append, followlinks=True):
        identity = os.stat(folder)
        if (identity.st_dev, identity.st_ino) in seen:
            dirs[:] = []  # a link back to a folder already walked
            continue
        seen.add((identity.st_dev, identity.st_ino))
        dirs.sort()
        for name in sorted(files):
            yield _local_entry(dataset, os.path.join(folder, name))
    for error in unlisted:
        yield Quarantined(dataset.name, error.filename, f"folder cannot be listed: {error.strerror or error}")


def _entries(dataset: catalog_lib.Dataset) -> Iterator[Entry]:
    if dataset.is_glob:
        for path in sorted(tf.io.gfile.glob(dataset.location)):
            yield (_local_entry(dataset, path) if is_local(path)
                   else FileRef(dataset.name, path, _relative_path(path, dataset.root), 0))
    elif is_local(dataset.location):
        if os.path.isdir(dataset.location):
            yield from _walk_local(dataset)
    elif tf.io.gfile.isdir(dataset.location):
        for folder, dirs, files in tf.io.gfile.walk(dataset.location):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                yield FileRef(dataset.name, path, _relative_path(path, dataset.root), 0)


def list_dataset(dataset: catalog_lib.Dataset) -> Iterator[Entry]:
    """Every entry of `dataset`, each once; a `limit` takes the same files every time.

    The limit keeps the `limit` entries whose paths hash smallest, a sample
    that does not depend on the listing order.
    """
    entries = _entries(dataset)
    if dataset.limit:
        entries = iter(sorted(heapq.nsmallest(
            dataset.limit, entries, key=lambda e: hashlib.sha256(e.path.encode()).hexdigest()),
            key=lambda e: e.path))
    return entries


def batches(refs: Iterator[FileRef]) -> Iterator[List[FileRef]]:
    """`refs` in consecutive batches of at most BATCH_FILES files and BATCH_BYTES bytes."""
    batch: List[FileRef] = []
    size = 0
    for ref in refs:
        if batch and (len(batch) == BATCH_FILES or size + ref.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(ref)
        size += ref.size
    if batch:
        yield batch
