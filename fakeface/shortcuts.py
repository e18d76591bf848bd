"""The shortcut guard: can the way files were saved tell real from fake?

When the classes were saved differently, a detector learns "PNG means real" or
"quality 99 means fake" instead of looking at the picture. Pooled over a whole
catalog such a confound is diluted by the datasets saved alike, while a
detector trained on the mix still learns it for the datasets that differ. So
the guard measures, for every attribute of fakeface/file_attributes.py:

* per group of the catalog (fakeface/catalog.py) that holds both labels: the
  group's real datasets against its fake ones;
* per dataset outside such a group: that dataset against every dataset of the
  other label, shown as such;
* pooled over the whole catalog.

Each figure is the balanced accuracy with which the attribute alone predicts
the label (0.5: it says nothing; 1.0: it separates the classes). A
metadata-only classifier over all attributes together, cross-validated, gives
one more figure per scope, because combinations can separate where single
attributes do not. At or above the warning accuracy the guard warns, naming
the scope, its datasets, the attribute, the values and the remedy.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.tree import DecisionTreeClassifier

from fakeface import catalog as catalog_lib
from fakeface import features
from fakeface.file_attributes import NOT_JPEG, FileAttributes

ATTRIBUTES = ("format", "jpeg_quality", "chroma_subsampling", "progressive", "resolution_bucket",
              "bytes_per_pixel", "exif", "icc_profile", "jpeg_comment", "png_text")
CLASSIFIER = "all attributes together"
REENCODE = "ingest.reencode_jpeg_quality"
STRIP = "ingest.strip_metadata"
# What removes each attribute's difference. Re-encoding every file as one
# baseline JPEG quality (4:2:0) equalises format, quality, subsampling and
# progressive; bytes per pixel then differs only as much as the pictures'
# detail does. Nothing in ingestion equalises resolution.
REMEDIES: Dict[str, Optional[str]] = {
    "format": REENCODE, "jpeg_quality": REENCODE, "chroma_subsampling": REENCODE, "progressive": REENCODE,
    "bytes_per_pixel": REENCODE, "resolution_bucket": None,
    "exif": STRIP, "icc_profile": STRIP, "jpeg_comment": STRIP, "png_text": STRIP,
}
GROUP, DATASET, POOLED = "group", "dataset", "pooled"
# The classifier: a shallow tree, so that it finds combinations of a few
# attributes, scored on folds it was not fitted on.
_TREE_DEPTH = 4
_FOLDS = 5
# An attribute counts as used by the classifier from this share of its importance.
_USED_SHARE = 0.05
_SHOWN_VALUES = 4


# A file as the guard sees it: per attribute of ATTRIBUTES, its key. The guard
# works on how many files share each (dataset, profile), so what it holds
# grows with the kinds of files a catalog has, not with their number.
Profile = Tuple[Any, ...]
Counts = Mapping[Tuple[str, Profile], int]


def profile(attributes: FileAttributes) -> Profile:
    """Per attribute, the key the guard compares; JSON round-trips it as a list.

    The ordered attributes stay numbers (JPEG quality, 0 when not JPEG; bytes
    per pixel by octave), the others keep their value.
    """
    return tuple(_octave(attributes.bytes_per_pixel) if name == "bytes_per_pixel" else getattr(attributes, name)
                 for name in ATTRIBUTES)


def count(observations: Iterable[Tuple[str, FileAttributes]]) -> Counts:
    """(dataset name, profile) -> files, from (dataset name, attributes) per file."""
    return collections.Counter((name, profile(attributes)) for name, attributes in observations)


def label(name: str, key: Any) -> str:
    """An attribute's key as the reports show it: a category.

    Bytes per pixel are taken by octave (0.25-0.5, 0.5-1, ...): files saved
    alike differ within an octave by the pictures' detail; a different
    format or quality moves them by one or more.
    """
    if name == "jpeg_quality":
        return str(key) if key else NOT_JPEG
    if name == "progressive":
        return "progressive" if key else "baseline"
    if name == "bytes_per_pixel":
        low = 2.0 ** key
        return f"{low:.3g}-{2 * low:.3g}"
    if isinstance(key, bool):
        return "yes" if key else "no"
    return str(key)


def _octave(bytes_per_pixel: float) -> int:
    return math.floor(math.log2(bytes_per_pixel))


def balanced_accuracy(real: Dict[str, int], fake: Dict[str, int]) -> float:
    """Balanced accuracy of guessing the label from one attribute's value alone.

    For each value the guess is the label for which that value is more common,
    as a share of the label's files; 0.5 when either side has no files.
    """
    n_real, n_fake = sum(real.values()), sum(fake.values())
    if not n_real or not n_fake:
        return 0.5
    return 0.5 * sum(max(real.get(v, 0) / n_real, fake.get(v, 0) / n_fake) for v in set(real) | set(fake))


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which datasets one figure compares: `real` ones against `fake` ones."""

    kind: str  # GROUP, DATASET (one dataset against the other label) or POOLED
    name: str  # the group's or the dataset's name; "all" when pooled
    real: Tuple[str, ...]
    fake: Tuple[str, ...]

    def describe(self) -> str:
        if self.kind == GROUP:
            return f"group {self.name} (real {', '.join(self.real)}; fake {', '.join(self.fake)})"
        if self.kind == DATASET:
            others, label = (self.fake, "fake") if self.name in self.real else (self.real, "real")
            return f"dataset {self.name} against every {label} dataset ({', '.join(others)})"
        return "all datasets pooled"


def scopes(datasets: Sequence[catalog_lib.Dataset]) -> List[Scope]:
    """Each group holding both labels, each dataset outside one, then everything pooled."""
    grouped: Dict[str, List[catalog_lib.Dataset]] = collections.defaultdict(list)
    for dataset in datasets:
        if dataset.group is not None:
            grouped[dataset.group].append(dataset)
    two_label = {g for g, members in grouped.items() if len({d.label for d in members}) == 2}

    def names(members, label):
        return tuple(d.name for d in members if d.label == label)

    out = [Scope(GROUP, g, names(grouped[g], features.REAL), names(grouped[g], features.FAKE))
           for g in grouped if g in two_label]
    for dataset in datasets:
        if dataset.group in two_label:
            continue
        if dataset.label == features.REAL:
            out.append(Scope(DATASET, dataset.name, (dataset.name,), names(datasets, features.FAKE)))
        else:
            out.append(Scope(DATASET, dataset.name, names(datasets, features.REAL), (dataset.name,)))
    out.append(Scope(POOLED, "all", names(datasets, features.REAL), names(datasets, features.FAKE)))
    return out


@dataclasses.dataclass(frozen=True)
class Figure:
    scope: Scope
    attribute: str  # one of ATTRIBUTES, or CLASSIFIER
    balanced_accuracy: float
    # Files per value on each side; for CLASSIFIER, files per side under "files".
    real: Dict[str, int]
    fake: Dict[str, int]
    # CLASSIFIER only: the attributes its tree relies on, most important first.
    used: Tuple[str, ...] = ()

    @property
    def attributes(self) -> Tuple[str, ...]:
        """The attributes behind the figure."""
        return self.used if self.attribute == CLASSIFIER else (self.attribute,)

    @property
    def remedies(self) -> Tuple[str, ...]:
        return tuple(sorted({REMEDIES[a] for a in self.attributes if REMEDIES[a]}))


@dataclasses.dataclass(frozen=True)
class ShortcutWarning:
    figure: Figure
    message: str


@dataclasses.dataclass(frozen=True)
class GuardResult:
    figures: Tuple[Figure, ...]
    warnings: Tuple[ShortcutWarning, ...]


def guard(counts: Counts, datasets: Sequence[catalog_lib.Dataset], warning_accuracy: float) -> GuardResult:
    """Every figure of every scope, and a warning for each at or above `warning_accuracy`.

    `counts` holds the ingested files per (dataset name, profile) (count()
    makes it from per-file attributes). A scope with no file on one side has
    no figure.
    """
    by_dataset: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for (name, key), files in counts.items():
        by_dataset[name][tuple(key)] += files
    figures: List[Figure] = []
    for scope in scopes(datasets):
        real = sum((by_dataset[name] for name in scope.real), collections.Counter())
        fake = sum((by_dataset[name] for name in scope.fake), collections.Counter())
        if not real or not fake:
            continue
        for index, attribute in enumerate(ATTRIBUTES):
            real_values, fake_values = _tally(real, index, attribute), _tally(fake, index, attribute)
            figures.append(Figure(scope, attribute, balanced_accuracy(real_values, fake_values),
                                  real_values, fake_values))
        classified = classifier_figure(scope, real, fake)
        if classified is not None:
            figures.append(classified)
    warnings = [ShortcutWarning(f, warning_message(f)) for f in figures if f.balanced_accuracy >= warning_accuracy]
    return GuardResult(tuple(figures), tuple(warnings))


def _tally(files: Mapping[Profile, int], index: int, attribute: str) -> Dict[str, int]:
    """Files per category of one attribute."""
    tally: Dict[str, int] = collections.defaultdict(int)
    for key, n in files.items():
        tally[label(attribute, key[index])] += n
    return dict(tally)


def _design_matrix(profiles: Sequence[Profile]) -> Tuple[np.ndarray, List[str]]:
    """Numbers a tree can split, and the attribute each column comes from.

    Ordered attributes stay numbers (quality, the octave of bytes per pixel,
    the resolution bucket's rank); the others are one column per value.
    """
    ranks = {name: rank for rank, (name, _) in enumerate(features.RESOLUTION_BUCKETS)}
    columns: List[np.ndarray] = []
    sources: List[str] = []
    for index, attribute in enumerate(ATTRIBUTES):
        keys = [p[index] for p in profiles]
        if attribute in ("jpeg_quality", "bytes_per_pixel"):
            columns.append(np.array(keys, float))
        elif attribute == "resolution_bucket":
            columns.append(np.array([ranks[k] for k in keys], float))
        else:
            values = [label(attribute, k) for k in keys]
            for category in sorted(set(values)):
                columns.append(np.array([v == category for v in values], float))
                sources.append(attribute)
            continue
        sources.append(attribute)
    return np.stack(columns, axis=1), sources


def classifier_figure(scope: Scope, real: Mapping[Profile, int], fake: Mapping[Profile, int]) -> Optional[Figure]:
    """Cross-validated balanced accuracy of a tree over all attributes; None under two files a side.

    `real` and `fake` count files per profile; the tree sees one row per file,
    in the profiles' order.
    """
    n_real, n_fake = sum(real.values()), sum(fake.values())
    folds = min(_FOLDS, n_real, n_fake)
    if folds < 2:
        return None
    profiles = sorted(real) + sorted(fake)
    files = [real[p] for p in sorted(real)] + [fake[p] for p in sorted(fake)]
    unique, sources = _design_matrix(profiles)
    matrix = np.repeat(unique, files, axis=0)
    labels = np.repeat([features.REAL] * len(real) + [features.FAKE] * len(fake), files)
    tree = DecisionTreeClassifier(max_depth=_TREE_DEPTH, class_weight="balanced", random_state=0)
    predicted = cross_val_predict(tree, matrix, labels,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    importance: Dict[str, float] = collections.defaultdict(float)
    for source, share in zip(sources, tree.fit(matrix, labels).feature_importances_):
        importance[source] += share
    used = tuple(sorted((a for a, share in importance.items() if share >= _USED_SHARE),
                        key=lambda a: (-importance[a], a)))
    return Figure(scope, CLASSIFIER, float(balanced_accuracy_score(labels, predicted)),
                  {"files": n_real}, {"files": n_fake}, used)


def _distribution(values: Dict[str, int]) -> str:
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{v} {n}" for v, n in items[:_SHOWN_VALUES])
    return shown + (f", {len(items) - _SHOWN_VALUES} more values" if len(items) > _SHOWN_VALUES else "")


def _remedy_text(figure: Figure) -> str:
    parts = [f"Remedy: {' and '.join(figure.remedies)}."] if figure.remedies else []
    if "bytes_per_pixel" in figure.attributes:
        parts.append("Bytes per pixel also follow the pictures' detail and noise: a difference that "
                     "re-encoding both classes alike leaves is in the pixels.")
    if "resolution_bucket" in figure.attributes:
        parts.append("No ingest setting equalises resolution: give both classes the same resolutions.")
    return " ".join(parts)


def warning_message(figure: Figure) -> str:
    """One line: where, what, how strongly, the values, and the remedy."""
    where = figure.scope.describe()
    if figure.attribute == CLASSIFIER:
        what = (f"the file attributes together tell real from fake with cross-validated balanced accuracy "
                f"{figure.balanced_accuracy:.2f}, relying on {', '.join(figure.used) or 'none'}")
    else:
        what = (f"{figure.attribute} alone tells real from fake with balanced accuracy "
                f"{figure.balanced_accuracy:.2f} (real: {_distribution(figure.real)}; "
                f"fake: {_distribution(figure.fake)})")
    return f"SHORTCUT in {where}: {what}. {_remedy_text(figure)}"
