"""Detection metrics scikit-learn does not have, computed from per-image scores.

ROC curves, AUC and average precision come from scikit-learn
(`sklearn.metrics`). What is here is what it lacks: the detection rate at a
false-positive limit, counts and rates under the serving rule `score >
threshold`, the threshold that meets a target false-positive rate, and
calibration bins with their expected calibration error. Label 1 is fake (the
positive class).
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np
from sklearn import metrics as sk


def _arrays(labels: Sequence[int], scores: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def tpr_at_fpr(labels, scores, max_fpr: float) -> float:
    """The highest detection rate whose false-positive rate is at most max_fpr."""
    fpr, tpr, _ = sk.roc_curve(*_arrays(labels, scores))
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def rates_at_threshold(labels, scores, threshold: float) -> Dict[str, float]:
    """Counts and rates when `score > threshold` is called fake (TFMA's, Keras' and serving's rule).

    Rates over an empty class are NaN: a real-only slice has no detection rate.
    """
    y, s = _arrays(labels, scores)
    tn, fp, fn, tp = (int(n) for n in sk.confusion_matrix(y, (s > threshold).astype(np.int64), labels=[0, 1]).ravel())

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
    # In float32, the models' own precision, rounded up: never below the score it must not exceed.
    lowest = np.float32(scores[allowed])
    if lowest < scores[allowed]:
        lowest = np.nextafter(lowest, np.float32(np.inf))
    lowest = float(lowest)
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
    the fraction that is fake; empty bins are kept (as NaN) so that every
    report has the same bins. ECE weighs each bin's gap by its share.
    scikit-learn's calibration_curve drops empty bins and has no ECE.
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
