"""The evaluation report: every slice metric, per-source tables and curves.

Built from one Evaluator run: its TFMA metrics and validation result, and
the model's own scores on the same test split, so that what TFMA cannot slice
(each fake source's AUC against all real images, ROC curves, robustness to
re-compression and down-scaling, test-time rotation) is computed too, by
fakeface.metrics. Written by the EvaluationReport component on every run and
by `fakeface report` on demand, as a self-contained HTML page plus JSON and
CSV files.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import functools
import hashlib
import html
import io
import json
import math
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

from fakeface import features, metrics
from fakeface.pipeline import evaluation

SPLIT = "test"
# Score columns of the predictions: the model on the test images as stored,
# and on each perturbed copy. Missing when the config turns them off.
ORIGINAL = "original"
JPEG = "jpeg"
DOWNSCALED = "downscaled"
TTA = "rotation_tta"
_COLUMN_TITLES = {ORIGINAL: "as stored", JPEG: "re-saved as JPEG", DOWNSCALED: "down-scaled",
                  TTA: "rotation TTA"}
_PREDICTION_FEATURES = (features.SOURCE, features.LABEL, features.GENERATOR, features.SHOT,
                        features.IMAGE_FORMAT, features.RESOLUTION_BUCKET, features.RELATIVE_PATH,
                        features.CONTENT_HASH)


@dataclasses.dataclass
class Report:
    """Everything the page, the JSON and the CSVs show about one model."""

    model_uri: str
    model_version: str
    threshold: float
    decision: Dict[str, Any]  # how the threshold was chosen (training.json)
    blessed: Optional[bool]
    failures: List[str]  # why the model was not blessed, one line per failed check
    slices: List[Dict[str, Any]]  # TFMA: {"slice": ..., metric: value, ...}
    predictions: List[Dict[str, Any]]  # one per test image, with a score per column
    columns: List[str]
    settings: Dict[str, Any]  # the robustness, TTA and blessing settings used
    training_curves_png: Optional[bytes] = None

    # Derived once: the page, the JSON and the CSVs each read them several times.
    @functools.cached_property
    def sources(self) -> List[Dict[str, Any]]:
        return source_rows(self.predictions, self.threshold, self.columns,
                           int(self.settings.get("min_real_images") or 1))

    @functools.cached_property
    def overall(self) -> Dict[str, Any]:
        return overall_metrics(self.predictions, self.threshold)


# ---------------------------------------------------------------- TFMA output

def _slice_name(slice_key) -> str:
    if not slice_key:
        return "overall"
    return ", ".join(f"{name}={value.decode() if isinstance(value, bytes) else value}"
                     for name, value in slice_key)


def _metric_name(key: str) -> str:
    # TFMA names a metric with one threshold "precision@0.5"; every threshold
    # here is the shipped one, so the suffix carries nothing.
    return key.split("@")[0]


def tfma_slices(evaluation_uri: str) -> List[Dict[str, Any]]:
    """One row per TFMA slice: its name and every scalar metric of both outputs."""
    import tensorflow_model_analysis as tfma

    rows = []
    for slice_key, by_output in tfma.load_eval_result(evaluation_uri).slicing_metrics:
        row: Dict[str, Any] = {"slice": _slice_name(slice_key)}
        for by_sub_key in by_output.values():
            for values in by_sub_key.values():
                for key, value in values.items():
                    if "doubleValue" in value:
                        row[_metric_name(key)] = float(value["doubleValue"])
        rows.append(row)
    return sorted(rows, key=lambda r: (r["slice"] != "overall", r["slice"].count(","), r["slice"]))


def _bound(threshold) -> str:
    if threshold.HasField("value_threshold"):
        bound = threshold.value_threshold
        parts = []
        if bound.HasField("lower_bound"):
            parts.append(f"at least {bound.lower_bound.value:g}")
        if bound.HasField("upper_bound"):
            parts.append(f"at most {bound.upper_bound.value:g}")
        return " and ".join(parts)
    return f"no worse than the baseline's by more than {-threshold.change_threshold.absolute.value:g}"


def validation_failures(evaluation_uri: str) -> List[str]:
    """Why TFMA did not bless the model, one sentence per failed check and slice."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    if result.validation_ok:
        return []
    messages = []
    for per_slice in result.metric_validations_per_slice:
        slice_key = tfma.slicer.deserialize_slice_key(per_slice.slice_key)
        for failure in per_slice.failures:
            name = failure.metric_key.name
            what = "change against the baseline" if failure.metric_key.is_diff else name
            messages.append(f"{what} is {failure.metric_value.double_value.value:.4f} on slice "
                            f"{_slice_name(slice_key)}: must be {_bound(failure.metric_threshold)}")
    for missing in result.missing_slices:
        messages.append(f"slice {missing} has no test images, so it could not be checked")
    return messages or ["the Evaluator did not bless the model (no failed check was recorded)"]


# ------------------------------------------------------------- scoring

def _test_records(examples_uri: str) -> List[Dict[str, Any]]:
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{SPLIT}", "*")))
    if not files:
        raise FileNotFoundError(f"{examples_uri}: no {SPLIT} split to report on")
    records = []
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(serialized)
        feature = example.features.feature
        record = {name: _value(feature[name]) for name in _PREDICTION_FEATURES + (features.IMAGE_BYTES,)}
        records.append(record)
    return records


def _value(feature) -> Any:
    if feature.int64_list.value:
        return int(feature.int64_list.value[0])
    value = feature.bytes_list.value[0] if feature.bytes_list.value else b""
    return value


def _seed(record: Dict[str, Any]) -> int:
    return int(hashlib.sha256(record[features.IMAGE_BYTES]).hexdigest()[:8], 16)


def recompress(data: bytes, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def downscale(data: bytes, factor: float) -> bytes:
    """The image scaled by `factor` and saved as PNG, which adds no artefacts of its own."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    buffer = io.BytesIO()
    image.resize(size, Image.LANCZOS).save(buffer, format="PNG")
    return buffer.getvalue()


def _predict(backend, images: Sequence[bytes], batch_size: int = 32) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        rows.extend(backend.predict(images[start:start + batch_size]))
    return rows


def _score(backend, images: Sequence[bytes]) -> List[float]:
    return [float(r[features.FAKE_PROBABILITY]) for r in _predict(backend, images)]


def score_test_split(model_dir: str, examples_uri: str, evaluator: Dict[str, Any]) -> Dict[str, Any]:
    """The model's scores on every test image, as stored and perturbed.

    Perturbations are deterministic per image (seeded by its bytes), so two
    models compared on the same examples see the same perturbed copies.
    """
    import numpy as np

    from fakeface.serving import classify, client

    backend = client.InProcessBackend(model_dir)
    records = _test_records(examples_uri)
    originals = [r[features.IMAGE_BYTES] for r in records]
    rows = _predict(backend, originals)
    first = rows[0] if rows else {}
    columns = {ORIGINAL: [float(r[features.FAKE_PROBABILITY]) for r in rows]}
    quality = evaluator.get("robustness_jpeg_quality") or []
    if quality:
        columns[JPEG] = _score(backend, [
            recompress(data, int(np.random.default_rng(_seed(r)).integers(quality[0], quality[1] + 1)))
            for r, data in zip(records, originals)])
    if evaluator.get("robustness_scale"):
        columns[DOWNSCALED] = _score(backend, [downscale(d, evaluator["robustness_scale"]) for d in originals])
    angles = evaluator.get("tta_angles") or []
    if angles:
        rotated = [variant for data in originals for variant in classify.rotations(data, angles)]
        columns[TTA] = np.mean(np.reshape(_score(backend, rotated), (len(originals), len(angles))), axis=1).tolist()
    predictions = []
    for index, record in enumerate(records):
        row = {name: (value.decode() if isinstance(value, bytes) else value)
               for name, value in record.items() if name != features.IMAGE_BYTES}
        row.update({column: scores[index] for column, scores in columns.items()})
        predictions.append(row)
    return {"predictions": predictions, "columns": list(columns),
            "threshold": float(first.get(features.THRESHOLD, math.nan)),
            "model_version": str(first.get(features.MODEL_VERSION, ""))}


# ------------------------------------------------------------- tables

def source_rows(predictions: Sequence[Dict[str, Any]], threshold: float,
                columns: Sequence[str], min_real_images: int = 1) -> List[Dict[str, Any]]:
    """Per source: the notes' per-dataset accuracy in every column, each fake
    source's AUC and average precision against all real test images, and
    whether a real source is large enough for blessing to check its
    false-positive rate."""
    real = [p for p in predictions if p[features.LABEL] == features.REAL]
    rows = []
    for source in sorted({p[features.SOURCE] for p in predictions}):
        members = [p for p in predictions if p[features.SOURCE] == source]
        label = members[0][features.LABEL]
        row: Dict[str, Any] = {"source": source, "label": features.LABEL_NAMES[label],
                               "generator": members[0][features.GENERATOR], "examples": len(members)}
        for column in columns:
            rates = metrics.rates_at_threshold([p[features.LABEL] for p in members],
                                               [p[column] for p in members], threshold)
            row[f"accuracy_{column}"] = rates["accuracy"]
        if label == features.FAKE:
            row["detection_rate"] = row[f"accuracy_{ORIGINAL}"]
            if real:
                pool = real + members
                labels, scores = [p[features.LABEL] for p in pool], [p[ORIGINAL] for p in pool]
                row["auc_vs_real"] = metrics.roc_auc(labels, scores)
                row["average_precision_vs_real"] = metrics.average_precision(labels, scores)
        else:
            row["false_positive_rate"] = 1.0 - row[f"accuracy_{ORIGINAL}"]
            row["checked_for_blessing"] = len(members) >= min_real_images
        rows.append(row)
    return rows


def overall_metrics(predictions: Sequence[Dict[str, Any]], threshold: float) -> Dict[str, Any]:
    labels = [p[features.LABEL] for p in predictions]
    scores = [p[ORIGINAL] for p in predictions]
    result: Dict[str, Any] = metrics.rates_at_threshold(labels, scores, threshold)
    if len(set(labels)) == 2:
        result.update(auc=metrics.roc_auc(labels, scores),
                      average_precision=metrics.average_precision(labels, scores),
                      tpr_at_1pct_fpr=metrics.tpr_at_fpr(labels, scores, 0.01))
    result["calibration"] = metrics.calibration_bins(labels, scores)
    return result


# ------------------------------------------------------------- building

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


def _read_optional(path: str) -> Optional[bytes]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def build(examples_uri: str, model_uri: str, evaluation_uri: Optional[str],
          blessing_uri: Optional[str], evaluator: Dict[str, Any]) -> Report:
    """Scores the test split and gathers the Evaluator's verdict into a Report."""
    model_dir = _model_dir(model_uri)
    scored = score_test_split(model_dir, examples_uri, evaluator)
    training = _training_record(model_dir)
    blessed = None
    failures: List[str] = []
    if blessing_uri:
        import tensorflow as tf

        blessed = tf.io.gfile.exists(os.path.join(blessing_uri, "BLESSED"))
    if evaluation_uri:
        failures = validation_failures(evaluation_uri)
        blessed = not failures if blessed is None else blessed
    return Report(
        model_uri=model_uri, model_version=scored["model_version"], threshold=scored["threshold"],
        decision=training.get("decision", {}), blessed=blessed, failures=failures,
        slices=tfma_slices(evaluation_uri) if evaluation_uri else [],
        predictions=scored["predictions"], columns=scored["columns"],
        settings={k: evaluator.get(k) for k in ("robustness_jpeg_quality", "robustness_scale", "tta_angles",
                                                "min_real_images")},
        training_curves_png=_read_optional(os.path.join(model_dir, "assets.extra", "training_curves.png")))


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
        "threshold": report.threshold, "decision": report.decision, "blessed": report.blessed,
        "not_blessed_because": report.failures, "overall": report.overall,
        "sources": report.sources, "columns": report.columns, "settings": report.settings,
        "slices": report.slices})


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
        f.write(render_html(report, compare))
    if local is None:
        tf.io.gfile.makedirs(out_dir)
        for name in os.listdir(staging):
            tf.io.gfile.copy(os.path.join(staging, name), os.path.join(out_dir, name), overwrite=True)
    return os.path.join(out_dir, "report.html")


# ------------------------------------------------------------- HTML

def _png(figure) -> str:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _source_bars(reports: Sequence[Report], names: Sequence[str]) -> str:
    plt = _pyplot()
    sources = [r["source"] for r in reports[0].sources]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(sources) + 2), 3.6))
    width = 0.8 / len(reports)
    for k, (report, name) in enumerate(zip(reports, names)):
        by_source = {r["source"]: r for r in report.sources}
        values = [by_source.get(s, {}).get(f"accuracy_{ORIGINAL}", math.nan) for s in sources]
        colours = ["#c0392b" if by_source.get(s, {}).get("label") == "fake" else "#2874a6" for s in sources]
        axis.bar([i + k * width for i in range(len(sources))], values, width, color=colours,
                 alpha=1.0 - 0.45 * k, label=name)
    axis.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(sources))])
    axis.set_xticklabels(sources, rotation=30, ha="right")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy at the threshold")
    axis.set_title("per source: detection rate (fake, red) and 1 - false-positive rate (real, blue)")
    if len(reports) > 1:
        axis.legend()
    return _png(figure)


def _roc_curves(report: Report) -> str:
    plt = _pyplot()
    real = [p for p in report.predictions if p[features.LABEL] == features.REAL]
    figure, axis = plt.subplots(figsize=(5.2, 4.4))
    labels = [p[features.LABEL] for p in report.predictions]
    if len(set(labels)) == 2:
        fpr, tpr, _ = metrics.roc_curve(labels, [p[ORIGINAL] for p in report.predictions])
        axis.plot(fpr, tpr, color="black", linewidth=2, label="all sources")
    for row in report.sources:
        if row["label"] != "fake" or not real:
            continue
        pool = real + [p for p in report.predictions if p[features.SOURCE] == row["source"]]
        fpr, tpr, _ = metrics.roc_curve([p[features.LABEL] for p in pool], [p[ORIGINAL] for p in pool])
        axis.plot(fpr, tpr, label=f"{row['source']} vs real (AUC {row['auc_vs_real']:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set_xlabel("false-positive rate (real images)")
    axis.set_ylabel("detection rate")
    axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def _calibration(report: Report) -> str:
    plt = _pyplot()
    bins = report.overall["calibration"]
    figure, axis = plt.subplots(figsize=(4.4, 4.0))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    points = [(p, f) for p, f in zip(bins["mean_probability"], bins["fraction_fake"]) if not math.isnan(p)]
    axis.plot([p for p, _ in points], [f for _, f in points], marker="o")
    axis.axvline(report.threshold, color="#c0392b", linestyle="--", label=f"threshold {report.threshold:.4f}")
    axis.set_xlabel("predicted probability of fake")
    axis.set_ylabel("fraction fake")
    axis.set_title(f"calibration (ECE {bins['expected_calibration_error']:.3f})")
    axis.legend(fontsize=8)
    return _png(figure)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdict(report: Report) -> str:
    if report.blessed is None:
        return "<p>Blessing: unknown (no Evaluator result).</p>"
    if report.blessed:
        return '<p class="ok">BLESSED: every check passed.</p>'
    items = "".join(f"<li>{html.escape(f)}</li>" for f in report.failures)
    return f'<p class="bad">NOT BLESSED; the Pusher will not push this model.</p><ul>{items}</ul>'


def _source_table(report: Report) -> str:
    header = ["source", "label", "generator", "examples", "detection rate", "false-positive rate",
              "FPR checked for blessing", "AUC vs all real", "AP vs all real"] + [
                  f"accuracy: {_COLUMN_TITLES[c]}" for c in report.columns]
    minimum = report.settings.get("min_real_images")

    def checked(row: Dict[str, Any]) -> str:
        if "checked_for_blessing" not in row:
            return ""
        return "yes" if row["checked_for_blessing"] else f"no: under {minimum} images"

    rows = [[r["source"], r["label"], r["generator"], r["examples"], r.get("detection_rate", math.nan),
             r.get("false_positive_rate", math.nan), checked(r), r.get("auc_vs_real", math.nan),
             r.get("average_precision_vs_real", math.nan)] + [r[f"accuracy_{c}"] for c in report.columns]
            for r in report.sources]
    return _table(header, rows)


def _confusion(report: Report) -> str:
    o = report.overall
    return _table(["", "called real", "called fake"],
                  [["real", o["true_negatives"], o["false_positives"]],
                   ["fake", o["false_negatives"], o["true_positives"]]])


def _slices_table(report: Report) -> str:
    names = [evaluation.EXAMPLE_COUNT, evaluation.ACCURACY, evaluation.PRECISION, evaluation.RECALL,
             evaluation.FALSE_POSITIVE_RATE, evaluation.CHECKED_FALSE_POSITIVE_RATE, evaluation.AUC, evaluation.AVERAGE_PRECISION,
             evaluation.TPR_AT_1PCT_FPR, evaluation.CALIBRATION]
    return ("<p>As the Evaluator computed them (TFMA; thresholded metrics at the model's threshold, "
            "average precision interpolated between 10,000 thresholds).</p>"
            + _table(["slice"] + names, [[s["slice"]] + [s.get(n, math.nan) for n in names]
                                         for s in report.slices]))


def _settings(report: Report) -> str:
    s = report.settings
    parts = []
    if JPEG in report.columns:
        parts.append(f"re-saved as JPEG at a quality drawn per image from {s['robustness_jpeg_quality']}")
    if DOWNSCALED in report.columns:
        parts.append(f"down-scaled by {s['robustness_scale']}")
    if TTA in report.columns:
        parts.append(f"rotation TTA: mean score over rotations of {s['tta_angles']} degrees")
    return "; ".join(parts)


_STYLE = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 18px}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}
td:first-child{text-align:left}.ok{color:#1e8449;font-weight:bold}.bad{color:#c0392b;font-weight:bold}
.row{display:flex;flex-wrap:wrap;gap:18px}h2{margin-top:28px}"""


def render_html(report: Report, compare: Optional[Report] = None) -> str:
    o = report.overall
    title = f"fakeface evaluation: model {report.model_version}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>Model: {html.escape(report.model_uri)}</p>", _verdict(report),
             f"<p>Decision threshold <b>{report.threshold:.6f}</b> "
             f"({html.escape(str(report.decision.get('method', 'unknown')))}"
             + (f", target false-positive rate {report.decision['target_fpr']}" if "target_fpr" in report.decision else "")
             + ").</p>",
             "<h2>Overall (test split)</h2>",
             _table(["examples", "accuracy", "precision", "recall", "false-positive rate", "AUC",
                     "average precision", "TPR at 1% FPR", "ECE"],
                    [[o["examples"], o["accuracy"], o["precision"], o["recall"], o["false_positive_rate"],
                      o.get("auc", math.nan), o.get("average_precision", math.nan),
                      o.get("tpr_at_1pct_fpr", math.nan), o["calibration"]["expected_calibration_error"]]]),
             "<h3>Confusion matrix at the threshold</h3>", _confusion(report)]
    if compare is not None:
        parts += ["<h2>Side by side</h2>", _compare_table(report, compare),
                  _source_bars([report, compare], [report.model_version, compare.model_version])]
    parts += ["<h2>Per source</h2>",
              "<p>A fake source's accuracy is its detection rate, a real source's is one minus its "
              "false-positive rate. AUC and AP of a fake source are against every real test image.</p>",
              _source_bars([report], [report.model_version]), _source_table(report),
              f"<p>Robustness and TTA columns: {html.escape(_settings(report)) or 'none configured'}.</p>",
              "<h2>ROC curves and calibration</h2><div class='row'>", _roc_curves(report),
              _calibration(report), "</div>"]
    if report.training_curves_png:
        parts += ["<h2>Training curves</h2>",
                  f'<img alt="" src="data:image/png;base64,{base64.b64encode(report.training_curves_png).decode()}">']
    if report.slices:
        parts += ["<h2>Every TFMA slice</h2>", _slices_table(report)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _compare_table(a: Report, b: Report) -> str:
    by_source_b = {r["source"]: r for r in b.sources}
    rows = [["overall AUC", a.overall.get("auc", math.nan), b.overall.get("auc", math.nan)],
            ["overall accuracy", a.overall["accuracy"], b.overall["accuracy"]],
            ["threshold", a.threshold, b.threshold]]
    for r in a.sources:
        other = by_source_b.get(r["source"], {})
        rows.append([f"{r['source']} ({r['label']}) accuracy", r[f"accuracy_{ORIGINAL}"],
                     other.get(f"accuracy_{ORIGINAL}", math.nan)])
    return _table(["", a.model_version, b.model_version], rows)
