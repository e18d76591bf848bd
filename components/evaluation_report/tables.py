"""Per-source and overall tables from per-image scores: what TFMA's slicing cannot express."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from sklearn import metrics as sk

from fakeface import features, metrics
from fakeface.components.evaluation_report.scoring import ORIGINAL


def source_rows(predictions: Sequence[Dict[str, Any]], thresholds: Mapping[str, float],
                min_real_images: int = 1) -> List[Dict[str, Any]]:
    """Per source: the notes' per-dataset accuracy in every score column, at
    that column's threshold (`thresholds`: column -> threshold), each fake
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
        for column, threshold in thresholds.items():
            rates = metrics.rates_at_threshold([p[features.LABEL] for p in members],
                                               [p[column] for p in members], threshold)
            row[f"accuracy_{column}"] = rates["accuracy"]
        if label == features.FAKE:
            row["detection_rate"] = row[f"accuracy_{ORIGINAL}"]
            if real:
                pool = real + members
                labels, scores = [p[features.LABEL] for p in pool], [p[ORIGINAL] for p in pool]
                row["auc_vs_real"] = float(sk.roc_auc_score(labels, scores))
                row["average_precision_vs_real"] = float(sk.average_precision_score(labels, scores))
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
        result.update(auc=float(sk.roc_auc_score(labels, scores)),
                      average_precision=float(sk.average_precision_score(labels, scores)),
                      tpr_at_1pct_fpr=metrics.tpr_at_fpr(labels, scores, 0.01))
    result["calibration"] = metrics.calibration_bins(labels, scores)
    return result
