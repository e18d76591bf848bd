"""The TFMA EvalConfig: what the Evaluator measures, per slice, and what blesses."""

from __future__ import annotations

import json

import tensorflow_model_analysis as tfma

from fakeface import features
from fakeface.pipeline import config as config_lib

# Source x shot shows whether a detector trained on close-ups copes with wide shots.
CROSS_SLICES = ((features.SOURCE, features.SHOT),)
# Single-class slices (most sources) have no AUC: the per-source number that
# counts is the accuracy at the decision threshold, i.e. the detection rate of
# a fake source and one minus the false-positive rate of a real source.
AUC = "auc"
ACCURACY = "binary_accuracy"


def slicing_specs():
    return ([tfma.SlicingSpec()]
            + [tfma.SlicingSpec(feature_keys=[name]) for name in features.SLICE_FEATURES]
            + [tfma.SlicingSpec(feature_keys=list(keys)) for keys in CROSS_SLICES])


def build_eval_config(evaluator: config_lib.EvaluatorConfig) -> tfma.EvalConfig:
    at_threshold = json.dumps({"thresholds": [evaluator.decision_threshold]})
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": evaluator.min_auc}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -evaluator.max_auc_drop}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name="serving_examples",
            label_key=features.LABEL,
            prediction_key=features.FAKE_PROBABILITY)],
        slicing_specs=slicing_specs(),
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # Blessing looks at the overall slice only: inside a one-class
            # slice AUC is undefined and would fail every model.
            tfma.MetricConfig(class_name="AUC", config=json.dumps({"name": AUC}),
                              per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                                  slicing_specs=[tfma.SlicingSpec()], threshold=auc_threshold)]),
            tfma.MetricConfig(class_name="BinaryAccuracy", config=json.dumps(
                {"name": ACCURACY, "threshold": evaluator.decision_threshold})),
            tfma.MetricConfig(class_name="Precision", config=at_threshold),
            tfma.MetricConfig(class_name="Recall", config=at_threshold),
            tfma.MetricConfig(class_name="FallOut", config=at_threshold),
        ])])
