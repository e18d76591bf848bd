"""The evaluation report of one Evaluator run: its verdict, every slice, per-source tables and curves.

Built from the Evaluator's TFMA metrics and validation result, and the
model's own scores on the same test split, so that what TFMA cannot slice
(each fake source's AUC against all real images, ROC curves, robustness to
re-compression and down-scaling, test-time rotation) is computed too. Written
by the EvaluationReport component on every run and by `fakeface report` on
demand, as a self-contained HTML page plus JSON and CSV files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from fakeface.components.data_validation import executor as data_validation
from fakeface.components.evaluation_report import page, scoring, verdict
from fakeface.components.evaluation_report.content import Report


def _model_dir(model_uri: str) -> str:
    from tfx.utils import path_utils

    return path_utils.serving_model_path(model_uri)


def _training_record(model_dir: str) -> Dict[str, Any]:
    import tensorflow as tf

    path = os.path.join(model_dir, "assets.extra", "training.json")
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def served_version(serving_model_dir: Optional[str], model_version: str) -> str:
    """The version folder under `serving_model_dir` that holds the model trained at `model_version`; "" if none.

    The Pusher numbers a version when it pushes, so only the training record
    the model carries ties the two ids together.
    """
    import tensorflow as tf

    if not serving_model_dir or not model_version or not tf.io.gfile.isdir(serving_model_dir):
        return ""
    for name in sorted(tf.io.gfile.listdir(serving_model_dir)):
        name = name.rstrip("/")
        if name.isdigit() and _training_record(os.path.join(serving_model_dir, name)).get(
                "model_version") == model_version:
            return name
    return ""


def _read_optional(path: str) -> Optional[bytes]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def build(examples_uri: str, model_uri: str, evaluation_uri: Optional[str],
          blessing_uri: Optional[str], evaluator: Dict[str, Any], validation_uri: Optional[str] = None,
          serving_model_dir: Optional[str] = None) -> Report:
    """Scores the test split and gathers the Evaluator's verdict and the data validation into a Report.

    `serving_model_dir`, TF Serving's model base path, is where the model's
    served version is looked for.
    """
    model_dir = _model_dir(model_uri)
    training = _training_record(model_dir)
    scored = scoring.score_test_split(model_dir, examples_uri, evaluator, training)
    blessed = None
    failures: List[str] = []
    if blessing_uri:
        import tensorflow as tf

        blessed = tf.io.gfile.exists(os.path.join(blessing_uri, "BLESSED"))
    if evaluation_uri:
        failures = verdict.validation_failures(evaluation_uri)
        blessed = not failures if blessed is None else blessed
    return Report(
        model_uri=model_uri, model_version=scored["model_version"], threshold=scored["threshold"],
        decision=training.get("decision", {}), blessed=blessed, failures=failures,
        slices=verdict.tfma_slices(evaluation_uri) if evaluation_uri else [],
        predictions=scored["predictions"], columns=scored["columns"], column_decisions=scored["column_decisions"],
        settings={k: evaluator.get(k) for k in ("robustness_jpeg_quality", "robustness_scale", "tta_angles",
                                                "min_real_images")},
        training_curves_png=_read_optional(os.path.join(model_dir, "assets.extra", "training_curves.png")),
        validation=data_validation.read_validation(validation_uri) if validation_uri else None,
        served_version=served_version(serving_model_dir, scored["model_version"]))


# ------------------------------------------------------------- writing

def _write_csv(path: str, rows: Sequence[Dict[str, Any]]) -> None:
    fields: List[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def summary(report: Report) -> Dict[str, Any]:
    return _jsonable({
        "model_uri": report.model_uri, "model_version": report.model_version,
        "served_version": report.served_version,
        "threshold": report.threshold, "decision": report.decision, "blessed": report.blessed,
        "not_blessed_because": report.failures, "overall": report.overall,
        "sources": report.sources, "columns": report.columns, "column_decisions": report.column_decisions,
        "settings": report.settings, "slices": report.slices, "validation": report.validation})


def write(report: Report, out_dir: str, compare: Optional[Report] = None) -> str:
    """Writes report.html, metrics.json, sources.csv, slices.csv and predictions.csv; returns the HTML path."""
    import tensorflow as tf

    local = out_dir if "://" not in out_dir else None
    staging = local or os.path.join("/tmp", "fakeface-report-" + hashlib.sha256(out_dir.encode()).hexdigest()[:12])
    os.makedirs(staging, exist_ok=True)
    with open(os.path.join(staging, "metrics.json"), "w", encoding="utf-8") as f:
        data = {"model": summary(report)}
        if compare is not None:
            data["compared_with"] = summary(compare)
        json.dump(data, f, indent=2, sort_keys=True)
    _write_csv(os.path.join(staging, "sources.csv"), report.sources)
    _write_csv(os.path.join(staging, "slices.csv"), report.slices)
    _write_csv(os.path.join(staging, "predictions.csv"), report.predictions)
    with open(os.path.join(staging, "report.html"), "w", encoding="utf-8") as f:
        f.write(page.render_html(report, compare))
    if local is None:
        tf.io.gfile.makedirs(out_dir)
        for name in os.listdir(staging):
            tf.io.gfile.copy(os.path.join(staging, name), os.path.join(out_dir, name), overwrite=True)
    return os.path.join(out_dir, "report.html")
