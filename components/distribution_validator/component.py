"""DistributionValidator: TFX's, comparing with the served model's statistics when there are any.

The drift check: TFDV's L-infinity distance of each configured feature
between this run's train split and the train split the served model was
trained on (components/served_statistics), one ExampleAnomalies artifact.
Until a model with statistics is served there is nothing to compare with, and
TFX's executor records that ("blessed" 2 for the split pair) instead of failing.
"""

from typing import Mapping

from tfx.components.distribution_validator import component as tfx_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import distribution_validator_pb2

from fakeface.components.distribution_validator import executor

# This run's train split against the served model's.
SPLIT_PAIRS = [("train", "train")]


class DistributionValidator(tfx_component.DistributionValidator):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)


def drift_config(thresholds: Mapping[str, float]) -> distribution_validator_pb2.DistributionValidatorConfig:
    """An L-infinity comparator per feature, at its threshold."""
    config = distribution_validator_pb2.DistributionValidatorConfig()
    for name, threshold in sorted(thresholds.items()):
        feature = config.default_slice_config.feature.add()
        feature.path.step.append(name)
        feature.distribution_comparator.infinity_norm.threshold = threshold
    return config
