"""fakeface.metrics: what scikit-learn does not compute, checked by brute force on seeded scores."""

import math

import numpy as np
import pytest

from fakeface import metrics


@pytest.fixture(params=[0, 1, 2])
def scored(request):
    rng = np.random.default_rng(request.param)
    labels = rng.integers(0, 2, 300)
    # Rounded, so that tied scores occur.
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 2)
    return labels, scores


def test_rates_at_threshold_count_a_score_above_the_threshold_as_fake(scored):
    labels, scores = scored
    threshold = float(np.median(scores))  # a score many images share: ties count as real
    rates = metrics.rates_at_threshold(labels, scores, threshold)
    fake, called_fake = labels == 1, scores > threshold
    assert rates["true_positives"] == np.sum(fake & called_fake)
    assert rates["false_positives"] == np.sum(~fake & called_fake)
    assert rates["false_negatives"] == np.sum(fake & ~called_fake)
    assert rates["true_negatives"] == np.sum(~fake & ~called_fake)
    assert rates["examples"] == labels.size
    assert rates["accuracy"] == pytest.approx(np.mean(fake == called_fake))
    assert rates["precision"] == pytest.approx(np.sum(fake & called_fake) / np.sum(called_fake))
    assert rates["recall"] == pytest.approx(np.mean(called_fake[fake]))
    assert rates["false_positive_rate"] == pytest.approx(np.mean(called_fake[~fake]))


def test_a_one_class_slice_has_no_detection_rate():
    rates = metrics.rates_at_threshold([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert rates["false_positive_rate"] == pytest.approx(1 / 3)
    assert math.isnan(rates["recall"])
    assert rates["precision"] == 0.0
    assert math.isnan(metrics.rates_at_threshold([1, 1], [0.1, 0.2], 0.5)["false_positive_rate"])


def test_tpr_at_fpr_is_the_best_operating_point_within_the_limit(scored):
    labels, scores = scored
    fake = labels == 1
    # Every threshold that changes a decision, under the rule score >= t.
    points = [(np.mean(scores[~fake] >= t), np.mean(scores[fake] >= t)) for t in np.unique(scores)]
    points.append((0.0, 0.0))
    for limit in (0.0, 0.01, 0.1, 0.5):
        best = max(tpr for fpr, tpr in points if fpr <= limit)
        assert metrics.tpr_at_fpr(labels, scores, limit) == pytest.approx(best)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        metrics.rates_at_threshold([0, 1, 0], [0.1, 0.2], 0.5)


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2, 0.5])
def test_threshold_for_fpr_meets_the_target_and_is_the_lowest_that_does(target):
    rng = np.random.default_rng(4)
    real = rng.beta(2, 5, 200).astype(np.float32)
    threshold = metrics.threshold_for_fpr(real, target)
    fpr = float(np.mean(real > np.float32(threshold)))
    assert fpr <= target
    # Any lower threshold admits one more real image and breaks the target.
    lower = np.nextafter(np.float32(threshold), np.float32(0))
    assert np.mean(real > lower) > target


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_threshold_for_fpr_meets_the_target_on_scores_finer_than_float32(seed):
    # Averaged scores (rotation TTA) are float64; the threshold is a float32.
    real = np.random.default_rng(seed).beta(2, 5, 101)
    for target in (0.0, 0.05, 0.2):
        threshold = metrics.threshold_for_fpr(real, target)
        assert np.mean(real > threshold) <= target
        assert threshold == float(np.float32(threshold))


def test_threshold_for_fpr_handles_ties():
    real = np.array([0.9, 0.9, 0.9, 0.1], np.float32)
    threshold = metrics.threshold_for_fpr(real, 0.5)
    assert np.mean(real > np.float32(threshold)) == 0.0


def test_calibration_of_a_calibrated_model_is_near_zero():
    rng = np.random.default_rng(5)
    probabilities = rng.uniform(0, 1, 20000)
    labels = (rng.uniform(0, 1, 20000) < probabilities).astype(int)
    calibration = metrics.calibration_bins(labels, probabilities)
    assert calibration["expected_calibration_error"] < 0.02
    assert sum(calibration["counts"]) == 20000
    overconfident = metrics.calibration_bins(labels, np.round(probabilities))
    assert overconfident["expected_calibration_error"] > 0.2


def test_calibration_keeps_empty_bins():
    calibration = metrics.calibration_bins([0, 1], [0.05, 0.95])
    assert calibration["counts"] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert math.isnan(calibration["mean_probability"][4])


def test_threshold_sits_mid_gap_when_that_changes_no_decision():
    real = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    fake = np.array([0.6, 0.9, 0.95], np.float32)
    lowest = metrics.threshold_for_fpr(real, 0.0)
    assert lowest == pytest.approx(0.04)
    centred = metrics.threshold_for_fpr(real, 0.0, fake)
    assert 0.04 < centred < 0.6
    # Midway in log-odds, not in probability: 0.04 and 0.6 are log-odds -3.18 and 0.41.
    assert np.log(centred / (1 - centred)) == pytest.approx((np.log(0.04 / 0.96) + np.log(0.6 / 0.4)) / 2, abs=1e-4)
    for threshold in (lowest, centred):
        assert np.mean(real > threshold) == 0 and np.mean(fake > threshold) == 1


def test_threshold_gap_ends_at_the_next_real_image_allowed_above():
    real = np.array([0.1, 0.2, 0.3, 0.8], np.float32)  # one of four may be called fake
    fake = np.array([0.9], np.float32)
    threshold = metrics.threshold_for_fpr(real, 0.25, fake)
    assert 0.3 < threshold < 0.8
    assert np.mean(real > threshold) == 0.25 and np.mean(fake > threshold) == 1
