"""The model's scores on every test image, as stored and perturbed, through the serving signature.

Images are read and scored a batch at a time: what stays per image is its
row of the predictions, never its bytes, so memory does not grow with the
split's bytes.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from typing import Any, Dict, Iterable, Iterator, List, Sequence

from fakeface import features, images

SPLIT = "test"
# Where the model's threshold was chosen, and so the rotation-averaged score's.
CALIBRATION_SPLIT = "eval"
# Score columns of the predictions: the model on the test images as stored,
# and on each perturbed copy. Missing when the config turns them off.
ORIGINAL = "original"
JPEG = "jpeg"
DOWNSCALED = "downscaled"
TTA = "rotation_tta"
_PREDICTION_FEATURES = (features.SOURCE, features.LABEL, features.GENERATOR, features.SHOT,
                        features.IMAGE_FORMAT, features.RESOLUTION_BUCKET, features.RELATIVE_PATH,
                        features.CONTENT_HASH)
_BATCH = 32


def _records(examples_uri: str, split: str) -> Iterator[Dict[str, Any]]:
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"{examples_uri}: no {split} split to report on")
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        yield {name: _value(feature[name]) for name in _PREDICTION_FEATURES + (features.IMAGE_BYTES,)}


def _batches(records: Iterable[Dict[str, Any]]) -> Iterator[List[Dict[str, Any]]]:
    batch: List[Dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _value(feature) -> Any:
    if feature.int64_list.value:
        return int(feature.int64_list.value[0])
    value = feature.bytes_list.value[0] if feature.bytes_list.value else b""
    return value


def _seed(record: Dict[str, Any]) -> int:
    return int(hashlib.sha256(record[features.IMAGE_BYTES]).hexdigest()[:8], 16)


def _model_pixels(data: bytes):
    """The pixels the model's own decoder reads in `data` (the image contract), as a Pillow image.

    Ingestion admits only files that decoder reads, some of which Pillow would
    refuse or read otherwise (a truncated JPEG it still decodes).
    """
    import tensorflow as tf
    from PIL import Image

    from fakeface.components.transform import preprocessing

    return Image.fromarray(preprocessing.decode_uint8(tf.constant(data)).numpy())


def recompress(data: bytes, quality: int) -> bytes:
    buffer = io.BytesIO()
    _model_pixels(data).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def downscale(data: bytes, factor: float) -> bytes:
    """The image scaled by `factor` and saved as PNG, which adds no artefacts of its own."""
    from PIL import Image

    image = _model_pixels(data)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return images.encode_png(image.resize(size, Image.LANCZOS))


def _predict(backend, images: Sequence[bytes]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for start in range(0, len(images), _BATCH):
        rows.extend(backend.predict(images[start:start + _BATCH]))
    # Ingestion admits only images the model decodes: a NaN score would
    # quietly skew every metric.
    failed = sorted({row[features.IMAGE_ERROR] for row in rows if row[features.IMAGE_ERROR]})
    if failed:
        raise ValueError(f"{len(failed)} kind(s) of test image the model could not decode: {'; '.join(failed)}")
    return rows


def _score(backend, images: Sequence[bytes]) -> List[float]:
    return [float(r[features.FAKE_PROBABILITY]) for r in _predict(backend, images)]


def _rotation_averaged(backend, images: Sequence[bytes], angles: Sequence[float]) -> List[float]:
    import numpy as np

    from fakeface.serving import classify

    rotated = [variant for data in images for variant in classify.rotations(data, angles)]
    return np.mean(np.reshape(_score(backend, rotated), (len(images), len(angles))), axis=1).tolist()


def _tta_decision(backend, examples_uri: str, angles: Sequence[float], training: Dict[str, Any],
                  model_threshold: float) -> Dict[str, Any]:
    """The rotation-averaged score's own threshold, chosen as the model's was.

    Averaging over rotations moves scores, so the model's threshold, chosen
    for single views, does not fit them. When the model's threshold was
    calibrated (training.json's decision names a target false-positive rate),
    this one is too: on the same eval split, restricted to the same training
    sources, at the same target, by the same rule (metrics.threshold_for_fpr).
    """
    from fakeface import metrics

    target = training.get("decision", {}).get("target_fpr")
    if target is None:
        return {"threshold": model_threshold, "method": "the model's threshold, which was not calibrated"}
    sources = training.get("config", {}).get("trainer", {}).get("train_sources") or []
    real: List[float] = []
    fake: List[float] = []
    for batch in _batches(r for r in _records(examples_uri, CALIBRATION_SPLIT)
                          if not sources or r[features.SOURCE].decode() in sources):
        scores = _rotation_averaged(backend, [r[features.IMAGE_BYTES] for r in batch], angles)
        for score, record in zip(scores, batch):
            (real if record[features.LABEL] == features.REAL else fake).append(score)
    if not real:
        return {"threshold": model_threshold, "method": f"the model's threshold: no real image in the {CALIBRATION_SPLIT} split"}
    return {"threshold": metrics.threshold_for_fpr(real, float(target), fake), "target_fpr": float(target),
            "method": f"calibrated on the {CALIBRATION_SPLIT} split's rotation-averaged scores"}


def score_test_split(model_dir: str, examples_uri: str, evaluator: Dict[str, Any],
                     training: Dict[str, Any]) -> Dict[str, Any]:
    """The model's scores on every test image, as stored and perturbed, and each column's threshold.

    Perturbations are deterministic per image (seeded by its bytes), so two
    models compared on the same examples see the same perturbed copies.
    `training` is the model's training.json.
    """
    import numpy as np

    from fakeface.serving import client

    backend = client.InProcessBackend(model_dir)
    quality = evaluator.get("robustness_jpeg_quality") or []
    scale = evaluator.get("robustness_scale")
    angles = evaluator.get("tta_angles") or []
    columns = [column for column, wanted in ((ORIGINAL, True), (JPEG, quality), (DOWNSCALED, scale), (TTA, angles))
               if wanted]
    predictions: List[Dict[str, Any]] = []
    first: Dict[str, Any] = {}
    for batch in _batches(_records(examples_uri, SPLIT)):
        originals = [r[features.IMAGE_BYTES] for r in batch]
        rows = _predict(backend, originals)
        first = first or rows[0]
        scores = {ORIGINAL: [float(r[features.FAKE_PROBABILITY]) for r in rows]}
        if quality:
            scores[JPEG] = _score(backend, [
                recompress(data, int(np.random.default_rng(_seed(r)).integers(quality[0], quality[1] + 1)))
                for r, data in zip(batch, originals)])
        if scale:
            scores[DOWNSCALED] = _score(backend, [downscale(data, scale) for data in originals])
        if angles:
            scores[TTA] = _rotation_averaged(backend, originals, angles)
        for index, record in enumerate(batch):
            row = {name: (value.decode() if isinstance(value, bytes) else value)
                   for name, value in record.items() if name != features.IMAGE_BYTES}
            row.update({column: scores[column][index] for column in columns})
            predictions.append(row)
    threshold = float(first.get(features.THRESHOLD, math.nan))
    decisions = {column: {"threshold": threshold, "method": "the model's threshold"}
                 for column in columns if column != TTA}
    if angles:
        decisions[TTA] = _tta_decision(backend, examples_uri, angles, training, threshold)
    return {"predictions": predictions, "columns": columns, "threshold": threshold,
            "column_decisions": decisions, "model_version": str(first.get(features.MODEL_VERSION, ""))}
