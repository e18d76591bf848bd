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
import hashlib
import io
import itertools
import os
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Set, Tuple

from fakeface import features, images
from fakeface.serving import client as client_lib

REAL, FAKE, UNREADABLE = features.LABEL_NAMES[features.REAL], features.LABEL_NAMES[features.FAKE], "unreadable"
CATEGORIES = (REAL, FAKE, UNREADABLE)
SCORES_FILE = "scores.csv"
COLUMNS = ("source", "destination", "category", features.FAKE_PROBABILITY, features.IS_FAKE,
           features.THRESHOLD, features.MODEL_VERSION, "sha256", "reason")
# The notes' Table 4: rotations by up to 15 degrees.
DEFAULT_TTA_ANGLES = (-15.0, 0.0, 15.0)


@dataclasses.dataclass
class Summary:
    real: int = 0
    fake: int = 0
    unreadable: int = 0
    skipped: int = 0  # already done by an earlier run
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
        buffer = io.BytesIO()
        rgb.rotate(angle, resample=Image.BILINEAR).save(buffer, format="PNG")
        variants.append(buffer.getvalue())
    return variants


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return _sha256(f.read())
    except OSError:
        return None


def _read_scores(path: str) -> List[Dict[str, str]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        # A row cut short by a crash lacks trailing fields; it was not
        # completed, so it does not count as done.
        return [row for row in csv.DictReader(f) if row.get("reason") is not None]


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

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".fakeface-partial-")
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


def _score(client: client_lib.Client, batch: List[Tuple[str, bytes]],
           tta_angles: Optional[Sequence[float]]) -> List[client_lib.Result]:
    if not tta_angles:
        return list(client.predict(batch))
    items, bad = [], {}
    for index, (path, data) in enumerate(batch):
        try:
            items.extend(((index, k), variant) for k, variant in enumerate(rotations(data, tta_angles)))
        except images.BadImage as e:
            bad[index] = client_lib.Result(path, error=str(e))
    by_file: Dict[int, List[client_lib.Result]] = {}
    for result in client.predict(items):
        by_file.setdefault(result.path[0], []).append(result)
    results = []
    for index, (path, _) in enumerate(batch):
        if index in bad:
            results.append(bad[index])
            continue
        variants = by_file[index]
        failed = [r for r in variants if not r.ok]
        if failed:
            results.append(client_lib.Result(path, error=failed[0].error))
            continue
        probability = sum(r.fake_probability for r in variants) / len(variants)
        threshold = variants[0].threshold
        results.append(client_lib.Result(path, fake_probability=probability, is_fake=probability > threshold,
                                         threshold=threshold, model_version=variants[0].model_version))
    return results


def classify(client: client_lib.Client, src_dir: str, dst_dir: str, move: bool = False,
             tta_angles: Optional[Sequence[float]] = None, progress: bool = True) -> Summary:
    """Scores every file below `src_dir` and sorts it into `dst_dir`; see the module docstring."""
    from tqdm import tqdm

    src, dst = os.path.realpath(src_dir), os.path.realpath(dst_dir)
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src_dir}: not a folder")
    if src == dst or src.startswith(dst + os.sep):
        raise ValueError(f"the source folder {src_dir} must not be the destination {dst_dir} or inside it")
    for category in CATEGORIES:
        os.makedirs(os.path.join(dst, category), exist_ok=True)
    scores_path = os.path.join(dst, SCORES_FILE)
    rows = _read_scores(scores_path)
    done = {(row["source"], row["sha256"]): row for row in rows}
    recorded = {os.path.join(dst, row["destination"]) for row in rows}

    paths = list(client_lib.iter_files([src], exclude=[dst]))
    summary = Summary()
    new_file = not os.path.exists(scores_path) or os.path.getsize(scores_path) == 0
    if not new_file:
        with open(scores_path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut_short = f.read(1) != b"\n"
        if cut_short:  # end the partial row an interruption left, so the next one starts clean
            with open(scores_path, "a", encoding="utf-8") as f:
                f.write("\n")
    with open(scores_path, "a", newline="", encoding="utf-8") as out, \
            tqdm(total=len(paths), unit="img", file=sys.stderr, disable=not progress,
                 desc="classify") as bar:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for start in range(0, len(paths), client.batch_size):
            chunk = paths[start:start + client.batch_size]
            pending: List[Tuple[str, bytes, str]] = []
            for path in chunk:
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError as e:
                    summary.failed.append((path, f"cannot read the file: {e.strerror or e}"))
                    continue
                sha = _sha256(data)
                row = done.get((path, sha))
                if row is None:
                    pending.append((path, data, sha))
                    continue
                summary.skipped += 1
                if move and _file_sha256(os.path.join(dst, row["destination"])) == sha:
                    os.unlink(path)
                    summary.moves_finished += 1

            results = _score(client, [(path, data) for path, data, _ in pending], tta_angles)
            placed_sources = []
            for (path, data, sha), result in zip(pending, results):
                category = UNREADABLE if not result.ok else (FAKE if result.is_fake else REAL)
                target = _claim(os.path.join(dst, category), os.path.basename(path), data, path, move,
                                sha, recorded)
                recorded.add(target)
                destination = os.path.relpath(target, dst)
                row = {"source": path, "destination": destination, "category": category, "sha256": sha,
                       features.FAKE_PROBABILITY: "" if not result.ok else f"{result.fake_probability:.6f}",
                       features.IS_FAKE: "" if not result.ok else int(result.is_fake),
                       features.THRESHOLD: "" if not result.ok else f"{result.threshold:.6f}",
                       features.MODEL_VERSION: result.model_version or "",
                       "reason": result.error or ""}
                writer.writerow(row)
                done[(path, sha)] = row
                setattr(summary, category, getattr(summary, category) + 1)
                placed_sources.append(path)
            out.flush()
            os.fsync(out.fileno())
            if move:
                # Only now that every row of the chunk is on disk.
                for path in placed_sources:
                    os.unlink(path)
            bar.update(len(chunk))
    return summary
