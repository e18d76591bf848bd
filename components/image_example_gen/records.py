"""The small records ingestion moves between its stages: never an image's bytes.

A file is listed as a FileRef, inspected into a FileRecord (or set aside as
Quarantined), and only the FileRecords of the files kept are read again, by
the stage that writes their examples.

The runner buffers a record per file between stages, so they are slotted:
pickled as their values without field names, a third smaller.
"""

from __future__ import annotations

import dataclasses
from typing import Dict

from fakeface import shortcuts


@dataclasses.dataclass(frozen=True, slots=True)
class FileRef:
    """A regular file of a dataset, as listed."""

    source: str  # the dataset's name
    path: str
    relative_path: str  # below the dataset's root
    size: int  # bytes by the listing's stat; 0 where the file system was not asked


@dataclasses.dataclass(frozen=True, slots=True)
class Quarantined:
    """A file set aside, and why, in one line."""

    source: str
    path: str
    reason: str

    def to_dict(self) -> Dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class FileRecord:
    """What inspecting an image file found: everything ingestion decides on, and its example's features."""

    source: str
    path: str
    relative_path: str
    content_sha256: str  # of the file: byte-identical files share it
    perceptual_hash: str  # of the decoded pixels (fakeface/near_duplicates.py)
    # As the example stores it: the file's format as the model's decoder takes
    # it (fakeface/images.py:format_of) and its JPEG quality, or JPEG and
    # ingest.reencode_jpeg_quality when re-encoding.
    format: str
    width: int
    height: int
    jpeg_quality: int
    # Report-only facts.
    mode: str
    exif_orientation: int
    frames: int
    # How the bytes the example stores were saved, as the shortcut guard compares it.
    profile: shortcuts.Profile
    # The near-duplicate cluster (fakeface/near_duplicates.py), once ingestion
    # has seen every file; images that share it land in the same split.
    cluster_id: str = ""
