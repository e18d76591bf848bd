"""The report as one self-contained HTML page: the evaluation template, its tables and inline PNG charts."""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Dict, List, Optional, Sequence

from sklearn import metrics as sk

from fakeface import features
from fakeface.components import reporting
from fakeface.components.evaluation_report.content import Report
from fakeface.components.evaluation_report.scoring import DOWNSCALED, JPEG, ORIGINAL, TTA
from fakeface.pipeline import evaluation

_COLUMN_TITLES = {ORIGINAL: "as stored", JPEG: "re-saved as JPEG", DOWNSCALED: "down-scaled",
                  TTA: "rotation TTA"}
_FAKE_COLOUR, _REAL_COLOUR = "#c0392b", "#2874a6"
SLICE_METRICS = [evaluation.EXAMPLE_COUNT, evaluation.MEAN_LABEL, evaluation.ACCURACY, evaluation.PRECISION,
                 evaluation.RECALL, evaluation.FALSE_POSITIVE_RATE, evaluation.CHECKED_FALSE_POSITIVE_RATE,
                 evaluation.AUC, evaluation.AVERAGE_PRECISION, evaluation.TPR_AT_1PCT_FPR,
                 evaluation.CALIBRATION]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _png(figure) -> str:
    """The figure as base64 PNG."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    _pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def source_bars(reports: Sequence[Report], names: Sequence[str]):
    """Accuracy per source at each model's threshold, one bar per model; the matplotlib figure."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    sources = [r["source"] for r in reports[0].sources]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(sources) + 2), 3.6))
    width = 0.8 / len(reports)
    for k, report in enumerate(reports):
        by_source = {r["source"]: r for r in report.sources}
        values = [by_source.get(s, {}).get(f"accuracy_{ORIGINAL}", math.nan) for s in sources]
        colours = [_FAKE_COLOUR if by_source.get(s, {}).get("label") == "fake" else _REAL_COLOUR for s in sources]
        axis.bar([i + k * width for i in range(len(sources))], values, width, color=colours, alpha=1.0 - 0.45 * k)
    axis.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(sources))])
    axis.set_xticklabels(sources, rotation=30, ha="right")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy at the threshold")
    axis.set_title("accuracy per source")
    handles = [Patch(color=_FAKE_COLOUR, label="fake source: detection rate"),
               Patch(color=_REAL_COLOUR, label="real source: 1 - false-positive rate")]
    if len(reports) > 1:
        handles += [Patch(color="grey", alpha=1.0 - 0.45 * k, label=name) for k, name in enumerate(names)]
    # Beside the bars, not over them; tight_layout makes room for it.
    axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


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
    axis.axvline(report.threshold, color=_FAKE_COLOUR, linestyle="--", label=f"threshold {report.threshold:.4f}")
    axis.set_xlabel("predicted probability of fake")
    axis.set_ylabel("fraction fake")
    axis.set_title(f"calibration (ECE {bins['expected_calibration_error']:.3f})")
    axis.legend(fontsize=8)
    return _png(figure)


def _source_table(report: Report):
    header = ["source", "label", "generator", "examples", "detection rate", "false-positive rate",
              "FPR checked for blessing", "AUC vs all real", "AP vs all real"] + [
                  f"accuracy: {_COLUMN_TITLES[c]}" for c in report.columns]
    minimum = report.settings.get("min_real_images")

    def checked(row: Dict[str, Any]) -> str:
        if "checked_for_blessing" not in row:
            return ""
        return "yes" if row["checked_for_blessing"] else f"no: under {minimum} images"

    rows = [[r["source"], r["label"], r["generator"], r["examples"], r.get("detection_rate"),
             r.get("false_positive_rate"), checked(r), r.get("auc_vs_real"),
             r.get("average_precision_vs_real")] + [r[f"accuracy_{c}"] for c in report.columns]
            for r in report.sources]
    return header, rows


def _column_notes(report: Report) -> List[str]:
    """What each perturbed column scores, and the threshold its accuracies are read at."""
    s = report.settings
    what = {JPEG: f"re-saved as JPEG at a quality drawn per image from {s.get('robustness_jpeg_quality')}",
            DOWNSCALED: f"down-scaled by {s.get('robustness_scale')}",
            TTA: f"rotation TTA: the mean score over rotations of {s.get('tta_angles')} degrees"}
    notes = []
    for column in report.columns:
        if column != ORIGINAL:
            decision = report.column_decisions[column]
            notes.append(f"{what[column]}; threshold {decision['threshold']:.6f}: {decision['method']}")
    return notes


def _comparison(a: Report, b: Report) -> List[List[Any]]:
    by_source_b = {r["source"]: r for r in b.sources}
    rows = [["overall AUC", a.overall.get("auc"), b.overall.get("auc")],
            ["overall accuracy", a.overall["accuracy"], b.overall["accuracy"]],
            ["threshold", a.threshold, b.threshold]]
    for r in a.sources:
        other = by_source_b.get(r["source"], {})
        rows.append([f"{r['source']} ({r['label']}) accuracy", r[f"accuracy_{ORIGINAL}"],
                     other.get(f"accuracy_{ORIGINAL}")])
    return rows


def render_html(report: Report, compare: Optional[Report] = None) -> str:
    charts = {"source_bars": _png(source_bars([report], [report.model_version])),
              "roc": _roc_curves(report), "calibration": _calibration(report),
              "training_curves": (base64.b64encode(report.training_curves_png).decode()
                                  if report.training_curves_png else "")}
    if compare is not None:
        charts["compared_bars"] = _png(source_bars([report, compare], [report.model_version, compare.model_version]))
    source_header, source_rows = _source_table(report)
    return reporting.render(
        "evaluation.html", report=report, compare=compare, charts=charts,
        comparison=_comparison(report, compare) if compare is not None else [],
        source_header=source_header, source_rows=source_rows, column_notes=_column_notes(report),
        slice_metrics=SLICE_METRICS,
        slice_rows=[[s["slice"]] + [s.get(n) for n in SLICE_METRICS] for s in report.slices])
