"""fakeface.metrics against scikit-learn on the same scores."""

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from fakeface import metrics


@pytest.fixture(params=[0, 1, 2])
def scored(request):
    rng = np.random.default_rng(request.param)
    labels = rng.integers(0, 2, 300)
    # Rounded, so that tied scores occur and are handled like scikit-learn.
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 2)
    return labels, scores


def test_roc_auc_and_average_precision_equal_scikit_learn(scored):
    labels, scores = scored
    assert metrics.roc_auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.average_precision(labels, scores) == pytest.approx(
        sk.average_precision_score(labels, scores), abs=1e-12)


def test_roc_curve_equals_scikit_learn(scored):
    labels, scores = scored
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thresholds = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])


def test_rates_at_threshold_equal_the_confusion_matrix(scored):
    labels, scores = scored
    rates = metrics.rates_at_threshold(labels, scores, 0.5)
    called_fake = scores > 0.5
    tn, fp, fn, tp = sk.confusion_matrix(labels, called_fake).ravel()
    assert (rates["true_negatives"], rates["false_positives"], rates["false_negatives"],
            rates["true_positives"]) == (tn, fp, fn, tp)
    assert rates["accuracy"] == pytest.approx(sk.accuracy_score(labels, called_fake))
    assert rates["precision"] == pytest.approx(sk.precision_score(labels, called_fake))
    assert rates["recall"] == pytest.approx(sk.recall_score(labels, called_fake))
    assert rates["false_positive_rate"] == pytest.approx(fp / (fp + tn))


def test_a_one_class_slice_has_no_detection_rate():
    rates = metrics.rates_at_threshold([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert rates["false_positive_rate"] == pytest.approx(1 / 3)
    assert math.isnan(rates["recall"])
    assert rates["precision"] == 0.0


def test_tpr_at_fpr_is_the_best_operating_point_within_the_limit(scored):
    labels, scores = scored
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, scores)
    for limit in (0.0, 0.01, 0.1, 0.5):
        assert metrics.tpr_at_fpr(labels, scores, limit) == pytest.approx(sk_tpr[sk_fpr <= limit].max())


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
