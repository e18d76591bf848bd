"""Near-duplicates: the same picture saved again, found by the Hamming distance of perceptual hashes.

Real collections share photos: the same face image re-encoded, resized or
converted sits in several datasets. If one copy lands in train and another in
test, the test measures memory, not detection; if the copies carry different
labels, one of the labels is wrong. So:

* `perceptual_hash` turns decoded pixels into 64 bits that change little when
  the picture is re-encoded or resized;
* `cluster_ids` groups hashes that differ in at most `max_bits` bits,
  transitively (connected components), without comparing all pairs;
* `label_conflicts` lists the files that are copies of a file under the
  other label, byte for byte or within `max_bits`, each with the reason it
  is quarantined.

Why a DCT hash and not an 8x8 average hash:
on the sample data the average hash reaches the recall wanted for re-encoded
and resized copies only at distances where a large share of distinct pictures
also fall within reach of one another (numbers in docs/measurements.md,
`benchmarks/near_duplicates.py`). The signs of the lowest DCT frequencies
describe the picture's layout of light and dark; they are indifferent to
brightness and contrast, and spread distinct pictures much further apart.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy import sparse
from scipy.sparse import csgraph

from fakeface import features

HASH_BITS = 64
# How a label conflict's quarantine reason begins.
LABEL_CONFLICT = "label conflict"
# The picture is brought to THUMBNAIL_SIDE x THUMBNAIL_SIDE before the DCT:
# small enough to drop what re-encoding and resizing change, large enough to
# hold 64 frequencies.
THUMBNAIL_SIDE = 32
# Hash bits are split into at most this many bands for the search: 16-bit bands
# keep about 1.5 hashes per bucket at 100,000 hashes if bits were random.
_MAX_BANDS = 4
# Bands up to this many bits are looked up in a table of 2^width starts (32 MB
# at most); wider ones by binary search.
_TABLE_MAX_WIDTH = 22
# Candidate pairs are checked this many at a time, which bounds the memory.
_PAIRS_PER_CHUNK = 1 << 21


def _dct_matrix(side: int) -> np.ndarray:
    """Orthonormal DCT-II: row k is frequency k."""
    k = np.arange(side)
    matrix = np.sqrt(2.0 / side) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * side))
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(THUMBNAIL_SIDE)
# The 64 lowest frequencies but the constant one (which only says how bright
# the picture is), lowest first: zig-zag order over rows + columns.
_FREQUENCIES = sorted(((u, v) for u in range(12) for v in range(12)), key=lambda f: (f[0] + f[1], f[0]))[1:65]
_ROWS = np.array([u for u, _ in _FREQUENCIES])
_COLUMNS = np.array([v for _, v in _FREQUENCIES])
_BIT_WEIGHTS = np.uint64(1) << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)
# Coefficients this close to zero (flat pictures) count as zero, not as the
# sign of a rounding error. The largest possible coefficient is 255 * 32.
_ZERO = 1e-6
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hash_of_thumbnail(thumbnail: np.ndarray) -> str:
    """64-bit DCT hash of a THUMBNAIL_SIDE x THUMBNAIL_SIDE grayscale thumbnail, as 16 hex digits:
    one bit per low frequency, set when its DCT coefficient is positive."""
    coefficients = (_DCT @ np.asarray(thumbnail, dtype=np.float64).reshape(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
                    @ _DCT.T)
    bits = coefficients[_ROWS, _COLUMNS] > _ZERO
    return f"{int((bits.astype(np.uint64) * _BIT_WEIGHTS).sum()):016x}"


def perceptual_hash(pixels: np.ndarray) -> str:
    """64-bit DCT hash of decoded uint8 pixels ([H, W], [H, W, 1] or [H, W, 3]), as 16 hex digits.

    Grayscale, then a Lanczos (anti-aliased) resize to the thumbnail, then
    hash_of_thumbnail. Ingestion makes the thumbnail with TensorFlow's
    anti-aliased Lanczos in its decoding graph
    (components/image_example_gen/inspection.py), whose recall is measured
    beside this one's (docs/measurements.md).
    """
    array = np.asarray(pixels)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or min(array.shape[:2]) < 1 or (
            array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ValueError(f"expected uint8 pixels of shape [H, W], [H, W, 1] or [H, W, 3], "
                         f"got {array.dtype} {array.shape}")
    image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    thumbnail = image.convert("L").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.LANCZOS)
    return hash_of_thumbnail(np.asarray(thumbnail, dtype=np.float64))


def hamming_distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _popcount(values: np.ndarray) -> np.ndarray:
    return _POPCOUNT[values.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.int64)


def near_pairs(hashes: np.ndarray, max_bits: int) -> Tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j, each once) of distinct uint64 `hashes` within `max_bits` bits of each other.

    Multi-index hashing: the 64 bits are dealt into m bands (bit b to band
    b mod m). Two hashes within max_bits bits differ in at most
    max_bits // m bits in some band (pigeonhole), so each hash is looked up,
    per band, under every band value that close to its own, among hashes
    sorted by that band; only those candidates are compared in full. The cost
    is linear in the hashes plus the candidates: about n x bands x probes
    x (n / 2^16) when bits are evenly spread.
    """
    if not 0 <= max_bits < HASH_BITS:
        raise ValueError(f"max_bits must be from 0 to {HASH_BITS - 1}, got {max_bits}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    found_left: List[np.ndarray] = []
    found_right: List[np.ndarray] = []
    if max_bits == 0 or len(hashes) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bands = min(max_bits + 1, _MAX_BANDS)
    radius = max_bits // bands
    bits = np.unpackbits(hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    for band in range(bands):
        columns = np.arange(band, HASH_BITS, bands)
        weights = np.uint64(1) << np.arange(len(columns), dtype=np.uint64)
        values = (bits[:, columns].astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
        order = np.argsort(values, kind="stable")
        bucket = _bucket_finder(values[order], len(columns))
        for flipped in range(radius + 1):
            for positions in itertools.combinations(range(len(columns)), flipped):
                low, high = bucket(values ^ np.uint64(sum(1 << p for p in positions)))
                for left, right in _candidates(low, high, order):
                    close = _popcount(hashes[left] ^ hashes[right]) <= max_bits
                    found_left.append(left[close])
                    found_right.append(right[close])
    if not found_left:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # A pair close in several bands is found once per band.
    keys = np.unique(np.concatenate(found_left) * len(hashes) + np.concatenate(found_right))
    return keys // len(hashes), keys % len(hashes)


def _bucket_finder(ordered: np.ndarray, width: int):
    """A function from band values to the [low, high) ranges of `ordered` that hold them.

    Narrow bands get a table of where each value starts, a gather per query;
    wide ones (two bands, max_bits 1) a binary search.
    """
    if width > _TABLE_MAX_WIDTH:
        return lambda targets: (np.searchsorted(ordered, targets, side="left"),
                                np.searchsorted(ordered, targets, side="right"))
    starts = np.zeros((1 << width) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ordered.astype(np.int64), minlength=1 << width), out=starts[1:])
    return lambda targets: (starts[targets.astype(np.int64)], starts[targets.astype(np.int64) + 1])


def _candidates(low: np.ndarray, high: np.ndarray, order: np.ndarray) -> Iterable[Tuple[np.ndarray, np.ndarray]]:
    """(i, j) with i < j for every j = order[k], low[i] <= k < high[i], in bounded chunks."""
    counts = high - low
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        # Whole queries per chunk, at least one, about _PAIRS_PER_CHUNK pairs.
        stop = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _PAIRS_PER_CHUNK, side="right"))
        stop = max(stop, start + 1)
        chunk_counts = counts[start:stop]
        total = int(chunk_counts.sum())
        if total:
            left = np.repeat(np.arange(start, stop), chunk_counts)
            first = np.repeat(low[start:stop] - (np.cumsum(chunk_counts) - chunk_counts), chunk_counts)
            right = order[first + np.arange(total)]
            keep = left < right
            yield left[keep], right[keep]
        start = stop


def cluster_ids(hashes: Sequence[str], max_bits: int) -> List[str]:
    """For each hash, its cluster: hashes linked by chains of distances of at most `max_bits` bits.

    The id of a cluster is its smallest hash, so a picture with no near
    duplicate keeps its own hash as id, and ids stay put as long as clusters
    do not merge. Equal hashes are one cluster whatever `max_bits`.
    """
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    unique, inverse = np.unique(values, return_inverse=True)
    left, right = near_pairs(unique, max_bits)
    graph = sparse.coo_matrix((np.ones(len(left), np.int32), (left, right)), shape=(len(unique), len(unique)))
    _, component = csgraph.connected_components(graph, directed=False)
    smallest = np.full(component.max() + 1 if len(component) else 0, len(unique), dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(len(unique)))  # unique is sorted: first index, smallest hash
    return [f"{int(h):016x}" for h in unique[smallest[component]][inverse]]


@dataclasses.dataclass(frozen=True, slots=True)  # one per file, all held at once: no __dict__ each
class FileRecord:
    """What label_conflicts needs of one file: the small record ingestion keeps per file."""

    content_hash: str  # SHA-256 of the bytes
    perceptual_hash: str  # from perceptual_hash
    cluster_id: str  # from cluster_ids
    label: int  # features.REAL or features.FAKE
    dataset: str
    path: str  # below the dataset's root

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.path}"


@dataclasses.dataclass(frozen=True)
class LabelConflict:
    """Files of one cluster that are copies of a file under the other label."""

    cluster_id: str
    # Each file to quarantine, with the files of the other label it copies:
    # byte for byte (`byte_identical`), or within max_bits of its hash.
    files: Tuple[FileRecord, ...]
    matches: Dict[FileRecord, Tuple[FileRecord, ...]]

    @property
    def byte_identical(self) -> bool:
        return any(m.content_hash == f.content_hash for f in self.files for m in self.matches[f])

    def reasons(self) -> List[Tuple[FileRecord, str]]:
        """Each file with its one-line quarantine reason, naming the files of the other label."""
        shown = 3
        out = []
        for record in self.files:
            others = self.matches[record]
            names = ", ".join(r.name for r in others[:shown])
            if len(others) > shown:
                names += f" and {len(others) - shown} more"
            how = ("byte-identical to" if any(r.content_hash == record.content_hash for r in others)
                   else "the same picture (near-duplicate) as")
            out.append((record, f"{LABEL_CONFLICT}: {how} {features.LABEL_NAMES[others[0].label]} {names}"))
        return out


def label_conflicts(records: Iterable[FileRecord], max_bits: int) -> List[LabelConflict]:
    """Files that are a copy of a file under the other label: byte-identical or within `max_bits`.

    Give it every file, byte-identical duplicates included: a file in a
    conflict is quarantined, not dropped as a duplicate, so that no label wins
    by the order of dataset names. Only direct copies count: a file linked to
    the other label only through a chain of near-duplicates keeps its label
    (and shares the cluster's split), because chains also join pictures that
    merely look alike.
    """
    by_cluster: Dict[str, List[FileRecord]] = collections.defaultdict(list)
    for record in records:
        by_cluster[record.cluster_id].append(record)
    conflicts = []
    for cluster_id, files in sorted(by_cluster.items()):
        if len({r.label for r in files}) < 2:
            continue
        matches = _other_label_matches(files, max_bits)
        conflicting = tuple(sorted((f for f in files if matches[f]), key=lambda r: (r.dataset, r.path)))
        if conflicting:
            conflicts.append(LabelConflict(cluster_id, conflicting, {f: matches[f] for f in conflicting}))
    return conflicts


def _other_label_matches(files: Sequence[FileRecord], max_bits: int) -> Dict[FileRecord, Tuple[FileRecord, ...]]:
    """For each file, the files of the other label whose hash is within max_bits of its own."""
    by_hash: Dict[str, List[FileRecord]] = collections.defaultdict(list)
    for record in files:
        by_hash[record.perceptual_hash].append(record)
    hashes = sorted(by_hash)
    neighbours: Dict[str, List[str]] = {h: [h] for h in hashes}
    left, right = near_pairs(np.array([int(h, 16) for h in hashes], dtype=np.uint64), max_bits)
    for i, j in zip(left.tolist(), right.tolist()):
        neighbours[hashes[i]].append(hashes[j])
        neighbours[hashes[j]].append(hashes[i])
    matches = {}
    for record in files:
        close = (r for h in neighbours[record.perceptual_hash] for r in by_hash[h])
        matches[record] = tuple(sorted((r for r in close if r.label != record.label),
                                       key=lambda r: (r.dataset, r.path)))
    return matches
