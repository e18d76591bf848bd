"""`fakeface classify`: sorts a folder of images into real/, fake/ and unreadable/.

Every file below SRC_DIR is scored by the model (through any `client.Client`
backend) and copied, or with `move=True` moved, into DST_DIR/real/,
DST_DIR/fake/ or DST_DIR/unreadable/. DST_DIR/scores.csv gets one row per file:
where it came from, where it went, its score and, for an unreadable file, why.

Guarantees:

* Nothing is overwritten. A file lands under its own name, or as
  `name (1).ext`, `name (2).ext`, ... when that name is taken; the final name
  is claimed with a hard link, which fails instead of replacing, so even two
  runs racing cannot clobber each other.
* Nothing is lost. A copy is written to a temporary file and linked into place
  only when complete; a moved source is deleted only after its copy exists and
  its scores.csv row is on disk.
* Resumable. A file whose (source path, SHA-256) already has a row is skipped,
  so a re-run after an interruption does only what is left. A move that was
  interrupted after its row was written is finished; a copy that was placed
  but not recorded is recognised by its content and adopted, not duplicated.
  The temporary files of a run that was killed are removed by the next run
  that finds no other run at work on DST_DIR (every run holds a shared lock
  on DST_DIR/.fakeface-classify.lock while it works).

Test-time rotation (`tta_angles`), as in the founding notes (rotation by up to
15 degrees improved generalisation): each image is also scored rotated by the
given angles and the probabilities are averaged. Rotated variants are the
pixels the model's own decoder reads, rotated with Pillow (bilinear, same
canvas size, black corners) and re-encoded as PNG, which is lossless, so no
new JPEG artefacts are scored; angle 0 sends the original file unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import fcntl
import hashlib
import itertools
import os
import sys
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from fakeface import features, images
from fakeface.serving import client as client_lib

REAL, FAKE, UNREADABLE = features.LABEL_NAMES[features.REAL], features.LABEL_NAMES[features.FAKE], "unreadable"
CATEGORIES = (REAL, FAKE, UNREADABLE)
SCORES_FILE = "scores.csv"
COLUMNS = ("source", "destination", "category", features.FAKE_PROBABILITY, features.IS_FAKE,
           features.THRESHOLD, features.MODEL_VERSION, features.SERVED_VERSION, "sha256", "reason")
LOCK_FILE = ".fakeface-classify.lock"
PARTIAL_PREFIX = ".fakeface-partial-"


@dataclasses.dataclass
class Summary:
    real: int = 0
    fake: int = 0
    unreadable: int = 0
    skipped: int = 0  # already done by an earlier run
    skipped_unreadable: int = 0  # of those, recorded as unreadable
    moves_finished: int = 0  # moves an interrupted run had recorded but not completed
    # Files that could not even be read from disk: left where they are, not recorded.
    failed: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def placed(self) -> int:
        return self.real + self.fake + self.unreadable


def rotations(data: bytes, angles: Sequence[float]) -> List[bytes]:
    """`data` rotated by each angle (degrees, counter-clockwise), as PNG; 0 keeps the file as is.

    The pixels rotated are those the model's own decoder reads (the image
    contract, fakeface/images.py), so a file the model refuses is refused
    here too: raises images.BadImage with the reason.
    """
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from fakeface.components.transform import preprocessing

    try:
        pixels = preprocessing.decode_uint8(tf.constant(data)).numpy()
    except tf.errors.InvalidArgumentError as e:
        raise images.BadImage(client_lib.clean_error(e.message)) from e
    rgb = Image.fromarray(np.asarray(pixels))
    variants = []
    for angle in angles:
        if angle == 0:
            variants.append(data)
            continue
        variants.append(images.encode_png(rgb.rotate(angle, resample=Image.BILINEAR)))
    return variants


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return _sha256(f.read())
    except OSError:
        return None


def _read_scores(path: str) -> Tuple[List[str], List[Dict[str, str]]]:
    """(header, complete rows) of a scores.csv; ([], []) when there is none."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        # A row cut short by a crash lacks trailing fields; it was not
        # completed, so it does not count as done.
        rows = [row for row in reader if row.get("reason") is not None]
        return list(reader.fieldnames or []), rows


def _claim(folder: str, name: str, data: bytes, source: str, move: bool, sha: str,
           recorded: Set[str]) -> str:
    """Puts `data` (the bytes of `source`) into `folder` under a free name; returns the path."""
    stem, ext = os.path.splitext(name)
    for n in itertools.count():
        target = os.path.join(folder, name if n == 0 else f"{stem} ({n}){ext}")
        if os.path.lexists(target):
            # A file with our content that no row claims was placed by an
            # interrupted run just before it could record it.
            if target not in recorded and _file_sha256(target) == sha:
                return target
            continue
        if move:
            try:
                os.link(source, target)  # same file system: no copy, and never replaces
                return target
            except FileExistsError:
                continue
            except OSError:
                pass  # another file system, or no hard links there: copy instead
        if _copy_exclusive(data, source, target):
            return target


def _copy_exclusive(data: bytes, source: str, target: str) -> bool:
    """Writes `data` to `target` only if `target` does not exist; never leaves a partial file there."""
    import shutil

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=PARTIAL_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        shutil.copystat(source, tmp)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # No hard links on this file system: exclusive creation still never
            # replaces a file, only a crash mid-write could leave it partial.
            try:
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            shutil.copystat(source, target)
            return True
    finally:
        os.unlink(tmp)


def _average(path: str, variants: Sequence[client_lib.Result]) -> client_lib.Result:
    """One file's result from those of its rotated copies: the mean probability, or the first error."""
    failed = [r for r in variants if not r.ok]
    if failed:
        return dataclasses.replace(failed[0], path=path)
    probability = sum(r.fake_probability for r in variants) / len(variants)
    first = variants[0]
    return client_lib.Result(path, fake_probability=probability, is_fake=probability > first.threshold,
                             threshold=first.threshold, model_version=first.model_version,
                             served_version=first.served_version)


def _score(client: client_lib.Client, batch: List[Tuple[str, bytes]],
           tta_angles: Optional[Sequence[float]]) -> List[client_lib.Result]:
    if not tta_angles:
        return list(client.predict(batch))
    results: List[Optional[client_lib.Result]] = [None] * len(batch)
    rotated: List[Tuple[int, List[bytes]]] = []
    for index, (path, data) in enumerate(batch):
        try:
            rotated.append((index, rotations(data, tta_angles)))
        except images.BadImage as e:
            results[index] = client_lib.Result(path, error=str(e))
    # The client answers in order: each file's variants come back together.
    answers = iter(client.predict([(batch[index][0], variant) for index, variants in rotated
                                   for variant in variants]))
    for index, variants in rotated:
        results[index] = _average(batch[index][0], [next(answers) for _ in variants])
    return results


def _row(path: str, destination: str, category: str, sha: str, result: client_lib.Result) -> Dict[str, object]:
    scored = result.ok
    return {"source": path, "destination": destination, "category": category, "sha256": sha,
            features.FAKE_PROBABILITY: f"{result.fake_probability:.6f}" if scored else "",
            features.IS_FAKE: int(result.is_fake) if scored else "",
            features.THRESHOLD: f"{result.threshold:.6f}" if scored else "",
            features.MODEL_VERSION: result.model_version or "",
            features.SERVED_VERSION: result.served_version or "",
            "reason": result.error or ""}


class Destination:
    """DST_DIR while one run works on it: its folders, its lock, scores.csv and what it records."""

    def __init__(self, dst: str):
        self.dst = dst
        for category in CATEGORIES:
            os.makedirs(os.path.join(dst, category), exist_ok=True)
        self._lock = open(os.path.join(dst, LOCK_FILE), "a")
        try:
            self._remove_leftovers()
            self.scores_path = os.path.join(dst, SCORES_FILE)
            header, rows = _read_scores(self.scores_path)
            if header and header != list(COLUMNS):
                self._rewrite(rows)  # written by an earlier fakeface: the new columns, left empty
            self.done = {(row["source"], row["sha256"]): row for row in rows}
            self.recorded = {os.path.join(dst, row["destination"]) for row in rows}
            self._out = self._open_for_append()
        except BaseException:
            self._lock.close()
            raise
        self._writer = csv.DictWriter(self._out, fieldnames=COLUMNS)
        if not header:
            self._writer.writeheader()

    def _remove_leftovers(self) -> None:
        """Removes the temporary files of killed runs, if no other run is at work here.

        The exclusive lock is had only when no other run holds its shared one;
        it then becomes this run's shared lock.
        """
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._lock, fcntl.LOCK_SH)
            return
        for folder in [self.dst] + [os.path.join(self.dst, category) for category in CATEGORIES]:
            for name in os.listdir(folder):
                if name.startswith(PARTIAL_PREFIX):
                    os.unlink(os.path.join(folder, name))
        fcntl.flock(self._lock, fcntl.LOCK_SH)

    def _rewrite(self, rows: List[Dict[str, str]]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dst, prefix=PARTIAL_PREFIX)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.scores_path)

    def _open_for_append(self):
        if os.path.exists(self.scores_path) and os.path.getsize(self.scores_path):
            with open(self.scores_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                cut_short = f.read(1) != b"\n"
            if cut_short:  # end the partial row an interruption left, so the next one starts clean
                with open(self.scores_path, "a", encoding="utf-8") as f:
                    f.write("\n")
        return open(self.scores_path, "a", newline="", encoding="utf-8")

    def pending(self, paths: Sequence[str], move: bool, summary: Summary) -> List[Tuple[str, bytes, str]]:
        """(path, bytes, SHA-256) of the files not yet done; finishes the moves an interrupted run left."""
        pending = []
        for path in paths:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                summary.failed.append((path, f"cannot read the file: {e.strerror or e}"))
                continue
            sha = _sha256(data)
            row = self.done.get((path, sha))
            if row is None:
                pending.append((path, data, sha))
                continue
            summary.skipped += 1
            summary.skipped_unreadable += row["category"] == UNREADABLE
            if move and _file_sha256(os.path.join(self.dst, row["destination"])) == sha:
                os.unlink(path)
                summary.moves_finished += 1
        return pending

    def place(self, pending: Sequence[Tuple[str, bytes, str]], results: Sequence[client_lib.Result],
              move: bool, summary: Summary) -> None:
        """Puts each file where its result says, records it, and only then deletes moved sources."""
        for (path, data, sha), result in zip(pending, results):
            category = UNREADABLE if not result.ok else (FAKE if result.is_fake else REAL)
            target = _claim(os.path.join(self.dst, category), os.path.basename(path), data, path, move,
                            sha, self.recorded)
            self.recorded.add(target)
            row = _row(path, os.path.relpath(target, self.dst), category, sha, result)
            self._writer.writerow(row)
            self.done[(path, sha)] = row
            setattr(summary, category, getattr(summary, category) + 1)
        self._out.flush()
        os.fsync(self._out.fileno())
        if move:
            for path, _, _ in pending:
                os.unlink(path)

    def close(self) -> None:
        self._out.close()
        self._lock.close()  # releases the lock

    def __enter__(self) -> "Destination":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _folders(src_dir: str, dst_dir: str) -> Tuple[str, str]:
    src, dst = os.path.realpath(src_dir), os.path.realpath(dst_dir)
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src_dir}: not a folder")
    if src == dst or src.startswith(dst + os.sep):
        raise ValueError(f"the source folder {src_dir} must not be the destination {dst_dir} or inside it")
    return src, dst


def _chunks(paths: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(paths), size):
        yield paths[start:start + size]


def classify(client: client_lib.Client, src_dir: str, dst_dir: str, move: bool = False,
             tta_angles: Optional[Sequence[float]] = None, progress: bool = True) -> Summary:
    """Scores every file below `src_dir` and sorts it into `dst_dir`; see the module docstring."""
    from tqdm import tqdm

    src, dst = _folders(src_dir, dst_dir)
    summary = Summary()
    with Destination(dst) as destination:
        paths = list(client_lib.iter_files([src], exclude=[dst]))
        with tqdm(total=len(paths), unit="img", file=sys.stderr, disable=not progress, desc="classify") as bar:
            for chunk in _chunks(paths, client.batch_size):
                pending = destination.pending(chunk, move, summary)
                results = _score(client, [(path, data) for path, data, _ in pending], tta_angles)
                destination.place(pending, results, move, summary)
                bar.update(len(chunk))
    return summary
