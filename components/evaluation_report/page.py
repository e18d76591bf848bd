"""The report as one self-contained HTML page: tables and inline PNG charts."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Dict, Iterable, Optional, Sequence

from sklearn import metrics as sk

from fakeface import features
from fakeface.components.evaluation_report.content import Report
from fakeface.components.evaluation_report.scoring import DOWNSCALED, JPEG, ORIGINAL, TTA
from fakeface.pipeline import evaluation

_COLUMN_TITLES = {ORIGINAL: "as stored", JPEG: "re-saved as JPEG", DOWNSCALED: "down-scaled",
                  TTA: "rotation TTA"}


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
        fpr, tpr, _ = sk.roc_curve(labels, [p[ORIGINAL] for p in report.predictions])
        axis.plot(fpr, tpr, color="black", linewidth=2, label="all sources")
    for row in report.sources:
        if row["label"] != "fake" or not real:
            continue
        pool = real + [p for p in report.predictions if p[features.SOURCE] == row["source"]]
        fpr, tpr, _ = sk.roc_curve([p[features.LABEL] for p in pool], [p[ORIGINAL] for p in pool])
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
