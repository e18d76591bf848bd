"""The dataset catalog: which image folders feed the pipeline, and what they are.

A catalog is a YAML file::

    datasets:
      - name: FFHQ_Orig
        location: ffhq/close-up        # folder, or glob; relative to this file,
                                       # absolute, or a gs:// (any tf.io.gfile) URL
        label: real                    # real | fake
        generator: camera              # the generator, or the origin of real photos
        shot: close-up                 # close-up | wide
        limit: 30000                   # optional: take at most this many files
        group: ffhq-close-up           # optional: see below
    experiments:                       # optional: named experiments for `fakeface experiments`,
      v1: [Gen1, FFHQ_Orig]            # each the datasets it trains on (both classes)

Every image found under a dataset's location becomes one example carrying the
dataset's name, label, generator and shot. Unknown keys, at the top or in a
dataset, are errors, so a typo never silently drops a setting.

A group names the datasets meant to be compared with each other: a real
collection and the fakes made from it or collected with it. The shortcut
guard (fakeface/shortcuts.py) checks each group on its own, so that a pair
saved differently is not hidden among datasets saved alike. A group must hold
both labels; a typo in a group's name would otherwise leave a lone dataset.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import yaml

from fakeface import features

CATALOG_FILE_NAME = "catalog.yaml"
TOP_LEVEL_KEYS = ("datasets", "experiments")
LABELS = {"real": features.REAL, "fake": features.FAKE}
_GLOB_CHARS = "*?["


class CatalogError(ValueError):
    """A catalog that cannot be used; the message names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    location: str  # absolute path or URL: a folder, or a glob of files
    label: int
    generator: str
    shot: str
    limit: Optional[int] = None
    group: Optional[str] = None

    @property
    def label_name(self) -> str:
        return features.LABEL_NAMES[self.label]

    @property
    def is_glob(self) -> bool:
        return any(c in self.location for c in _GLOB_CHARS)

    @property
    def root(self) -> str:
        """The folder that relative paths of this dataset's files are taken from."""
        if not self.is_glob:
            return self.location.rstrip("/")
        head = self.location
        while any(c in head for c in _GLOB_CHARS):
            head = os.path.dirname(head)
        return head

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "location": self.location,
            "label": self.label_name,
            "generator": self.generator,
            "shot": self.shot,
            "limit": self.limit,
            "group": self.group,
        }


@dataclasses.dataclass(frozen=True)
class Catalog:
    path: str
    datasets: Sequence[Dataset]
    # Experiment name -> the datasets its model trains on.
    experiments: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"datasets": [d.to_dict() for d in self.datasets],
                "experiments": {name: list(sources) for name, sources in self.experiments.items()}}

    def check_experiment(self, name: str, sources: Sequence[str]) -> None:
        """Raises CatalogError unless `sources` are datasets of this catalog holding both classes."""
        labels = {d.name: d.label for d in self.datasets}
        unknown = [s for s in sources if s not in labels]
        if unknown:
            raise CatalogError(f"{self.path}: experiment {name!r}: {unknown} are not datasets of the "
                               f"catalog (it has {list(labels)})")
        if {labels[s] for s in sources} != set(features.LABEL_NAMES):
            raise CatalogError(f"{self.path}: experiment {name!r}: {list(sources)} must hold real and "
                               "fake datasets; a detector needs both classes")


def _is_url(location: str) -> bool:
    return "://" in location


def _resolve_location(location: str, catalog_dir: str) -> str:
    if _is_url(location) or os.path.isabs(location):
        return location
    return os.path.normpath(os.path.join(catalog_dir, location))


def parse(data: Any, path: str) -> Catalog:
    """Builds a Catalog from parsed YAML, naming `path` in every error."""
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
        raise CatalogError(f"{path}: expected a mapping with a 'datasets' list")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise CatalogError(f"{path}: unknown keys {unknown}; known keys are {list(TOP_LEVEL_KEYS)}")
    catalog_dir = os.path.dirname(os.path.abspath(path)) if not _is_url(path) else os.path.dirname(path)
    datasets: List[Dataset] = []
    seen = set()
    for index, entry in enumerate(data["datasets"]):
        where = f"{path}: datasets[{index}]"
        if not isinstance(entry, dict):
            raise CatalogError(f"{where}: expected a mapping, got {entry!r}")
        unknown = set(entry) - {"name", "location", "label", "generator", "shot", "limit", "group"}
        if unknown:
            raise CatalogError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("name", "location", "label", "generator", "shot"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise CatalogError(f"{where}: '{key}' must be a non-empty string")
        name = entry["name"]
        if name in seen:
            raise CatalogError(f"{where}: dataset name {name!r} appears twice")
        seen.add(name)
        if entry["label"] not in LABELS:
            raise CatalogError(f"{where} ({name}): label must be one of {sorted(LABELS)}, got {entry['label']!r}")
        if entry["shot"] not in features.SHOTS:
            raise CatalogError(f"{where} ({name}): shot must be one of {list(features.SHOTS)}, got {entry['shot']!r}")
        limit = entry.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
            raise CatalogError(f"{where} ({name}): limit must be a positive integer, got {limit!r}")
        group = entry.get("group")
        if group is not None and (not isinstance(group, str) or not group):
            raise CatalogError(f"{where} ({name}): group must be a non-empty string, got {group!r}")
        datasets.append(
            Dataset(
                name=name,
                location=_resolve_location(entry["location"], catalog_dir),
                label=LABELS[entry["label"]],
                generator=entry["generator"],
                shot=entry["shot"],
                limit=limit,
                group=group,
            )
        )
    if not datasets:
        raise CatalogError(f"{path}: the catalog lists no datasets")
    labels = {d.label for d in datasets}
    for label, label_name in features.LABEL_NAMES.items():
        if label not in labels:
            raise CatalogError(f"{path}: the catalog has no {label_name} dataset; a detector needs both classes")
    _check_groups(datasets, path)
    catalog = Catalog(path=path, datasets=tuple(datasets))
    return dataclasses.replace(catalog, experiments=_parse_experiments(data.get("experiments"), catalog))


def _parse_experiments(data: Any, catalog: Catalog) -> Dict[str, Tuple[str, ...]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError(f"{catalog.path}: experiments: expected a mapping of names to lists of datasets")
    experiments = {}
    for name, sources in data.items():
        if not isinstance(name, str) or not isinstance(sources, list) or not sources or not all(
                isinstance(s, str) for s in sources):
            raise CatalogError(f"{catalog.path}: experiments.{name}: expected a non-empty list of dataset "
                               f"names, got {sources!r}")
        catalog.check_experiment(name, sources)
        experiments[name] = tuple(sources)
    return experiments


def check_local_datasets(catalog: Catalog) -> None:
    """Raises CatalogError if a dataset on a local disk is missing or holds no file.

    A check of seconds at most, before a run starts anything heavy: it stops
    at each dataset's first file. Datasets in buckets are checked when
    ingestion lists them, which needs TensorFlow's file systems.
    """
    for dataset in catalog.datasets:
        if _is_url(dataset.location):
            continue
        if not dataset.is_glob and not os.path.isdir(dataset.location):
            raise CatalogError(f"{catalog.path}: dataset {dataset.name!r}: no folder at {dataset.location}")
        if next(_local_files(dataset), None) is None:
            raise CatalogError(f"{catalog.path}: dataset {dataset.name!r} has no files at {dataset.location}")


def _local_files(dataset: Dataset) -> Iterator[str]:
    if dataset.is_glob:
        yield from (path for path in glob.iglob(dataset.location) if not os.path.isdir(path))
        return
    for root, _, files in os.walk(dataset.location):
        yield from (os.path.join(root, name) for name in files)


def _check_groups(datasets: Sequence[Dataset], path: str) -> None:
    members: Dict[str, List[Dataset]] = {}
    for dataset in datasets:
        if dataset.group is not None:
            members.setdefault(dataset.group, []).append(dataset)
    for group, grouped in members.items():
        labels = {d.label_name for d in grouped}
        if len(labels) < 2:
            names = ", ".join(d.name for d in grouped)
            raise CatalogError(f"{path}: group {group!r} holds only {labels.pop()} datasets ({names}); a group "
                               "is a real collection together with the fakes made from it or collected with it")


def load(path: str) -> Catalog:
    """Reads and validates a catalog file (a local path or any tf.io.gfile URL)."""
    if _is_url(path):
        import tensorflow as tf  # only remote catalogs need TensorFlow's file systems

        if not tf.io.gfile.exists(path):
            raise CatalogError(f"{path}: catalog file not found")
        with tf.io.gfile.GFile(path) as f:
            text = f.read()
    else:
        if not os.path.isfile(path):
            raise CatalogError(f"{path}: catalog file not found")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {e}") from e
    return parse(data, path)
