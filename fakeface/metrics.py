"""Detection metrics computed directly from scores, for thresholds and reports.

The Evaluator (TFMA) measures the sliced metrics a model is blessed on. What
TFMA cannot slice this way is computed here from per-image scores: a fake
source's AUC against all real images, ROC curves, and the decision threshold
that meets a target false-positive rate. Label 1 is fake (the positive class).
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np


def _arrays(labels: Sequence[int], scores: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def roc_curve(labels, scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), from (0, 0) up.

    A point for every distinct score t, with `score >= t` called fake, as in
    scikit-learn; the first point's threshold is +inf.
    """
    y, s = _arrays(labels, scores)
    positives, negatives = int((y == 1).sum()), int((y == 0).sum())
    if not positives or not negatives:
        raise ValueError("a ROC curve needs both real and fake images")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    true_positives = np.cumsum(y == 1)[last_of_run]
    false_positives = np.cumsum(y == 0)[last_of_run]
    fpr = np.r_[0.0, false_positives / negatives]
    tpr = np.r_[0.0, true_positives / positives]
    return fpr, tpr, np.r_[np.inf, s[last_of_run]]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; ties count half, as in scikit-learn."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapz(tpr, fpr))


def average_precision(labels, scores) -> float:
    """Precision averaged over the recall steps (scikit-learn's definition)."""
    y, s = _arrays(labels, scores)
    fpr, tpr, _ = roc_curve(y, s)
    positives, negatives = int((y == 1).sum()), int((y == 0).sum())
    true_positives, false_positives = tpr[1:] * positives, fpr[1:] * negatives
    precision = true_positives / (true_positives + false_positives)
    return float(np.sum(np.diff(tpr) * precision))


def tpr_at_fpr(labels, scores, max_fpr: float) -> float:
    """The highest detection rate whose false-positive rate is at most max_fpr."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def rates_at_threshold(labels, scores, threshold: float) -> Dict[str, float]:
    """Counts and rates when `score > threshold` is called fake (TFMA's and Keras' rule).

    Rates over an empty class are NaN: a real-only slice has no detection rate.
    """
    y, s = _arrays(labels, scores)
    called_fake = s > threshold
    tp = int(np.sum(called_fake & (y == 1)))
    fp = int(np.sum(called_fake & (y == 0)))
    fn = int(np.sum(~called_fake & (y == 1)))
    tn = int(np.sum(~called_fake & (y == 0)))

    def ratio(a: int, b: int) -> float:
        return a / b if b else math.nan

    return {
        "examples": int(y.size), "true_positives": tp, "false_positives": fp,
        "false_negatives": fn, "true_negatives": tn,
        "accuracy": ratio(tp + tn, y.size),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),  # the detection rate
        "false_positive_rate": ratio(fp, fp + tn),
    }


def threshold_for_fpr(real_scores: Sequence[float], target_fpr: float,
                      fake_scores: Sequence[float] = ()) -> float:
    """A threshold that calls at most target_fpr of these real images fake.

    An image is called fake when its score is above the threshold. With n
    real scores, at most floor(target_fpr * n) of them may be above it: the
    lowest such threshold is the next-highest real score itself (tied scores
    stay below with it), and it catches the most fakes at that rate.

    Every threshold up to the next score above it, real or fake, calls the
    same images fake. Given the fake scores, the threshold moves to the middle
    of that gap in log-odds: the same rates on these images, with a margin on
    both sides for images not seen yet, instead of one that touches a real image.
    """
    scores = np.sort(np.asarray(real_scores, dtype=np.float64).reshape(-1))[::-1]
    if not scores.size:
        raise ValueError("no real images to choose a threshold on")
    allowed = int(math.floor(target_fpr * scores.size + 1e-9))
    if allowed >= scores.size:
        return float(np.nextafter(scores[-1], -np.inf))
    lowest = float(np.float32(scores[allowed]))
    everything = np.concatenate([scores, np.asarray(fake_scores, dtype=np.float64).reshape(-1)])
    above = everything[everything > lowest]
    if not np.asarray(fake_scores).size or not above.size:
        return lowest
    upper = float(above.min())

    def logit(p: float) -> float:
        p = min(max(p, 1e-7), 1 - 1e-7)
        return math.log(p / (1 - p))

    middle = float(np.float32(1 / (1 + math.exp(-(logit(lowest) + logit(upper)) / 2))))
    return middle if lowest < middle < upper else lowest


def calibration_bins(labels, probabilities, bins: int = 10) -> Dict[str, list]:
    """Reliability diagram data and expected calibration error.

    Per equal-width probability bin: images, mean predicted probability and
    the fraction that is fake. ECE weighs each bin's gap by its share.
    """
    y, p = _arrays(labels, probabilities)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts, mean_probability, fraction_fake = [], [], []
    ece = 0.0
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        counts.append(n)
        mean_probability.append(float(p[members].mean()) if n else math.nan)
        fraction_fake.append(float(y[members].mean()) if n else math.nan)
        if n:
            ece += n / y.size * abs(mean_probability[-1] - fraction_fake[-1])
    return {"counts": counts, "mean_probability": mean_probability,
            "fraction_fake": fraction_fake, "expected_calibration_error": float(ece)}
