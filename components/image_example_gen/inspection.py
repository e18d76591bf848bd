"""Stage 2 of ingestion: each file read once, decoded once by the model's own decoder, described.

Runs inside the sandbox (sandbox.py), a batch of files at a time. Each file's
bytes give its SHA-256; the Transform graph's decoder
(`preprocessing.decode_uint8`, the image contract) gives its pixels, from
which come its size and perceptual hash; Pillow reads header facts only. What
leaves this stage is a FileRecord or a Quarantined entry per file, never the
bytes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from typing import List, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from fakeface import file_attributes, images, near_duplicates, shortcuts
from fakeface.components.image_example_gen.listing import is_local
from fakeface.components.image_example_gen.records import FileRecord, FileRef, Quarantined
from fakeface.components.transform import preprocessing
from fakeface.pipeline.config import IngestConfig

Result = Union[FileRecord, Quarantined]
_REASON_CHARS = 300
# What TensorFlow wraps round an op's own message in graph execution.
_TF_NOISE = re.compile(r"^(Graph execution error:|Detected at node|File \"|\[\[)")
_TF_DECORATION = re.compile(r"\{\{function_node [^}]*\}\}|\s*\[\[\{\{node [^}]*\}\}\]\]|\s*\[Op:[^\]]*\]")
_TF_ASSERTION = re.compile(r"assertion failed: \[(.*)\]")


def read_file(path: str) -> bytes:
    """The file's bytes; a local path is opened non-blocking, so a file that became a FIFO reads empty."""
    if not is_local(path):
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        return f.read()


def thumbnail(image: tf.Tensor) -> tf.Tensor:
    """The perceptual hash's grayscale thumbnail of a uint8 [h, w, 3] image, in the decoding graph:
    float32 [side, side] (near_duplicates.hash_of_thumbnail), by anti-aliased Lanczos as Pillow's.

    Both steps are linear, so the grayscale is taken of the thumbnail: at full
    size it would cost more than decoding the file.
    """
    side = near_duplicates.THUMBNAIL_SIDE
    small = tf.image.resize(image, [side, side], method="lanczos3", antialias=True)
    return tf.image.rgb_to_grayscale(small)[..., 0]


@functools.lru_cache(maxsize=None)
def _describer(max_pixels: int):
    """A graph that decodes a batch of images under the contract, at most `max_pixels` each by their headers,
    to their heights, widths and hash thumbnails."""
    def describe(data: tf.Tensor):
        image = preprocessing.decode_uint8(data, max_pixels)
        return tf.shape(image)[:2], thumbnail(image)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def describe_all(encoded: tf.Tensor):
        return tf.map_fn(describe, encoded, parallel_iterations=1, fn_output_signature=(
            tf.TensorSpec([2], tf.int32), tf.TensorSpec([near_duplicates.THUMBNAIL_SIDE] * 2, tf.float32)))

    return describe_all


def reason(error: BaseException) -> str:
    """The exception as one line: its type and its own message, without TensorFlow's graph boilerplate."""
    message = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in message.splitlines()]
    lines = [line for line in lines if line and not _TF_NOISE.match(line)] or [message.strip()]
    text = _TF_DECORATION.sub("", lines[-1]).strip()
    refused = _TF_ASSERTION.fullmatch(text)
    return f"{type(error).__name__}: {refused.group(1) if refused else text}"[:_REASON_CHARS]


def _described(datas: Sequence[bytes], max_pixels: int) -> List[Union[Tuple[int, int, np.ndarray], str]]:
    """(height, width, hash thumbnail) per image, or the reason it cannot be decoded.

    One call for the batch; only a batch with an image that fails is decoded
    again image by image, to tell which and why.
    """
    try:
        sizes, thumbnails = _describer(max_pixels)(tf.constant(list(datas), tf.string))
    except Exception as e:  # pylint: disable=broad-except
        if len(datas) == 1:
            return [reason(e)]
        return [result for data in datas for result in _described([data], max_pixels)]
    return [(int(s[0]), int(s[1]), h) for s, h in zip(sizes.numpy(), thumbnails.numpy())]


@functools.lru_cache(maxsize=None)
def _reencoder(quality: int):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def reencode(encoded: tf.Tensor) -> tf.Tensor:
        return tf.io.encode_jpeg(preprocessing.decode_uint8(encoded), quality=quality, chroma_downsampling=True,
                                 progressive=False, optimize_size=False)

    return reencode


def reencode_jpeg(data: bytes, quality: int) -> bytes:
    """The pixels the model's decoder sees in `data`, as a baseline JPEG of `quality`."""
    return _reencoder(quality)(tf.constant(data)).numpy()


def stored_bytes(data: bytes, config: IngestConfig) -> bytes:
    """The bytes an example stores for a file: re-encoded under ingest.reencode_jpeg_quality, without
    metadata under ingest.strip_metadata, else the file's own (`data` itself)."""
    if config.reencode_jpeg_quality:
        return reencode_jpeg(data, config.reencode_jpeg_quality)
    if config.strip_metadata:
        return file_attributes.strip_metadata(data)
    return data


def _record(ref: FileRef, data: bytes, described: Tuple[int, int, np.ndarray], config: IngestConfig) -> Result:
    height, width, small = described
    if min(width, height) < config.min_side:
        return Quarantined(ref.source, ref.path, f"{width}x{height} has a side under {config.min_side} pixels "
                                                  "(ingest.min_side)")
    header = images.read_header(data)
    fmt, quality = images.format_of(data), header.jpeg_quality
    try:
        stored = stored_bytes(data, config)
    except file_attributes.HeaderError as e:
        return Quarantined(ref.source, ref.path, f"ingest.strip_metadata cannot parse the file: {e}")
    try:
        # What the shortcut guard judges is what the model will be trained on.
        attributes = file_attributes.read(stored)
    except file_attributes.HeaderError:
        attributes = file_attributes.unparsed(stored, images.format_of(stored), width, height)
    if config.reencode_jpeg_quality:
        fmt, quality = "JPEG", config.reencode_jpeg_quality
    return FileRecord(source=ref.source, path=ref.path, relative_path=ref.relative_path,
                      content_sha256=hashlib.sha256(data).hexdigest(),
                      perceptual_hash=near_duplicates.hash_of_thumbnail(small), format=fmt, width=width, height=height,
                      jpeg_quality=quality, mode=header.mode, exif_orientation=header.exif_orientation,
                      frames=header.frames, profile=shortcuts.profile(attributes))


def _candidate(ref: FileRef) -> Union[bytes, Quarantined]:
    """The file's bytes if the decoder is to try them, else why not."""
    try:
        data = read_file(ref.path)
    except Exception as e:  # pylint: disable=broad-except
        return Quarantined(ref.source, ref.path, f"unreadable: {reason(e)}")
    if not data:
        return Quarantined(ref.source, ref.path, "empty file (0 bytes)")
    if not images.format_of(data):
        name = images.read_header(data).format
        return Quarantined(ref.source, ref.path, (f"format {name} is not taken" if name else "not an image")
                           + f"; the model's decoder reads {', '.join(images.ACCEPTED_FORMATS)}")
    return data


def inspect(refs: Sequence[FileRef], config: IngestConfig) -> List[Result]:
    """A FileRecord or a Quarantined entry for each of `refs`, in order; never raises for a file."""
    candidates = [_candidate(ref) for ref in refs]
    datas = [c for c in candidates if isinstance(c, bytes)]
    described = iter(_described(datas, config.max_pixels) if datas else [])
    results: List[Result] = []
    for ref, candidate in zip(refs, candidates):
        if isinstance(candidate, Quarantined):
            results.append(candidate)
            continue
        outcome = next(described)
        if isinstance(outcome, str):
            results.append(Quarantined(ref.source, ref.path, outcome))
            continue
        results.append(_record(ref, candidate, outcome, config))
    return results


def warm_up(config: IngestConfig) -> None:
    """Traces the decoder's graph on a tiny image, so that no file's time limit pays for it."""
    _described([tf.io.encode_png(tf.zeros([16, 16, 3], tf.uint8)).numpy()], config.max_pixels)
