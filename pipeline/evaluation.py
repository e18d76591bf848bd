"""The TFMA EvalConfig: what the Evaluator measures, per slice, and what blesses.

The model exports two scores (components/trainer/model.py): the probability
of "fake", and the decision score, the same ranking mapped so that the
model's own threshold, chosen by the Trainer after this config was built,
lands on 0.5. Thresholded metrics therefore read the decision score at 0.5,
which is "at the shipped threshold"; ranking and calibration metrics read the
probability.

Most sources hold one class only, so AUC inside a source's slice means
nothing: per source the number that counts is the detection rate (Recall) of
a fake source and the false-positive rate (FallOut) of a real one. AUC of each
fake source against all real images is in the report (components/evaluation_report/).

Blessing limits the false-positive rate of all real images together and of
each real source (CheckedFallOut), but only where the slice holds at least
evaluator.min_real_images real images: one false alarm among four images is a
25% rate that says more about the four images than about the model.
"""

from __future__ import annotations

import json
from typing import List

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import binary_confusion_matrices, confusion_matrix_metrics

from fakeface import features
from fakeface.pipeline import config as config_lib

# TFMA output names of the two scores: the serving signature's output keys.
PROBABILITY = features.FAKE_PROBABILITY
DECISION = features.DECISION_SCORE
# Metric names, as they appear in the Evaluator's output and the report.
EXAMPLE_COUNT = "example_count"
ACCURACY = "binary_accuracy"
PRECISION = "precision"
RECALL = "recall"  # the detection rate
FALSE_POSITIVE_RATE = "fall_out"
# The false-positive rate blessing checks: FALSE_POSITIVE_RATE where the slice
# holds enough real images, 0 (not checked) where it does not.
CHECKED_FALSE_POSITIVE_RATE = "checked_fall_out"
AUC = "auc"
AVERAGE_PRECISION = "average_precision"
TPR_AT_1PCT_FPR = "tpr_at_1pct_fpr"
CALIBRATION = "calibration"  # mean probability over mean label; 1 is calibrated
MEAN_LABEL = "mean_label"  # the share of fakes: 0 in a real-only slice, 1 in a fake-only one
# What a slice of one class cannot measure, which TFMA reports as 0: ranking
# and precision need both classes, and a rate over the missing class is 0/0.
UNDEFINED_WITHOUT_FAKES = (AUC, AVERAGE_PRECISION, TPR_AT_1PCT_FPR, PRECISION, RECALL, CALIBRATION)
UNDEFINED_WITHOUT_REALS = (AUC, AVERAGE_PRECISION, TPR_AT_1PCT_FPR, PRECISION, FALSE_POSITIVE_RATE,
                           CHECKED_FALSE_POSITIVE_RATE)
THRESHOLD = 0.5  # on the decision score: the shipped threshold

# Source x shot shows whether a detector trained on close-ups copes with wide shots.
CROSS_SLICES = ((features.SOURCE, features.SHOT),)
# Every real source's own slice: source sliced within label 0. Blessing puts
# the false-positive limit on these without naming the sources, which the
# config does not know before the data is read.
REAL_SOURCES = tfma.SlicingSpec(feature_keys=[features.SOURCE],
                                feature_values={features.LABEL: str(features.REAL)})
ALL_REAL = tfma.SlicingSpec(feature_values={features.LABEL: str(features.REAL)})


class CheckedFallOut(confusion_matrix_metrics.ConfusionMatrixMetricBase):
    """FallOut where the slice holds at least `min_real_images` real images; 0 below that.

    TFMA checks a threshold on every slice it matches and has no minimum
    size per threshold, so the minimum lives in the metric: a slice too small
    to judge reads 0, which no limit fails, and the report says it was not
    checked.
    """

    def __init__(self, thresholds=None, name: str = CHECKED_FALSE_POSITIVE_RATE, min_real_images: int = 1):
        super().__init__(thresholds=thresholds, name=name, min_real_images=min_real_images)

    def _default_threshold(self) -> float:
        return THRESHOLD

    def _metric_value(self, key, matrices: binary_confusion_matrices.Matrices, min_real_images: int):
        values = []
        for fp, tn in zip(matrices.fp, matrices.tn):
            real = fp + tn
            values.append(fp / real if real >= min_real_images else 0.0)
        return values[0] if len(values) == 1 else np.array(values)


def slicing_specs() -> List[tfma.SlicingSpec]:
    return ([tfma.SlicingSpec()]
            + [tfma.SlicingSpec(feature_keys=[name]) for name in features.SLICE_FEATURES]
            + [tfma.SlicingSpec(feature_keys=list(keys)) for keys in CROSS_SLICES]
            + [REAL_SOURCES, ALL_REAL])


def _metric(class_name: str, name: str, **config) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=class_name, config=json.dumps({"name": name, **config}))


def build_eval_config(evaluator: config_lib.EvaluatorConfig) -> tfma.EvalConfig:
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": evaluator.min_auc}),
        # Without a baseline (the first run, or baseline "none") TFMA skips
        # change thresholds and blesses on the value thresholds alone.
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -evaluator.max_auc_drop}))
    auc = _metric("AUC", AUC)
    # Blessing looks at the overall slice only: inside a one-class slice AUC
    # is undefined and would fail every model.
    auc.per_slice_thresholds.append(tfma.PerSliceMetricThreshold(
        slicing_specs=[tfma.SlicingSpec()], threshold=auc_threshold))
    checked_fall_out = tfma.MetricConfig(
        class_name=CheckedFallOut.__name__, module=__name__,
        config=json.dumps({"name": CHECKED_FALSE_POSITIVE_RATE, "thresholds": [THRESHOLD],
                           "min_real_images": evaluator.min_real_images}))
    checked_fall_out.per_slice_thresholds.append(tfma.PerSliceMetricThreshold(
        slicing_specs=[ALL_REAL, REAL_SOURCES],
        threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
            upper_bound={"value": evaluator.max_real_source_fpr}))))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name="serving_examples",
            label_keys={PROBABILITY: features.LABEL, DECISION: features.LABEL})],
        slicing_specs=slicing_specs(),
        # The metrics the Keras model was compiled with read a single label,
        # not the two outputs; the ones below cover them.
        options=tfma.Options(include_default_metrics={"value": False}),
        metrics_specs=[
            tfma.MetricsSpec(output_names=[DECISION], metrics=[
                _metric("ExampleCount", EXAMPLE_COUNT),
                _metric("MeanLabel", MEAN_LABEL),
                _metric("BinaryAccuracy", ACCURACY, threshold=THRESHOLD),
                _metric("Precision", PRECISION, thresholds=[THRESHOLD]),
                _metric("Recall", RECALL, thresholds=[THRESHOLD]),
                _metric("FallOut", FALSE_POSITIVE_RATE, thresholds=[THRESHOLD]),
                checked_fall_out,
            ]),
            tfma.MetricsSpec(output_names=[PROBABILITY], metrics=[
                auc,
                # Interpolated between TFMA's 10,000 thresholds (Davis and
                # Goadrich), so it differs slightly from the report's step-wise
                # scikit-learn definition. TFMA's step-wise "majoring" drops
                # the steps where precision is undefined and reads far too low.
                _metric("AUCPrecisionRecall", AVERAGE_PRECISION),
                _metric("SensitivityAtSpecificity", TPR_AT_1PCT_FPR, specificity=0.99),
                _metric("Calibration", CALIBRATION),
                tfma.MetricConfig(class_name="CalibrationPlot"),
            ]),
        ])
