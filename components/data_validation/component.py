"""DataValidation: the gate between the checks on the raw examples and Transform.

ExampleValidator compares every split's statistics with the curated schema,
and DistributionValidator the train split with the served model's training
data; both only write anomalies. This step reads them with TFDV's loader,
gives each a severity (TFDV's for schema anomalies, `validation.drift_severity`
for drift) and fails on those whose severity is in `validation.fail_on`, with
one line per anomaly: the feature, what was expected and what was found.
Transform depends on it, so a failed validation stops the run before
Transform on every runner. The others are warnings: in the log, `fakeface
run`'s summary, the ingestion report it re-renders with them, and the
evaluation report.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from fakeface.components.data_validation import executor


class DataValidationArtifact(types.Artifact):
    """A folder with validation.json and the ingestion report re-rendered with it (report.html)."""

    # namespace.Name: the form Kubeflow's compiler takes for custom types.
    TYPE_NAME = "fakeface.DataValidation"


class DataValidationSpec(types.ComponentSpec):
    PARAMETERS = {executor.FAIL_ON_KEY: ExecutionParameter(type=str),
                  executor.DRIFT_SEVERITY_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        executor.SCHEMA_ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        executor.DRIFT_ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
    }
    OUTPUTS = {executor.VALIDATION_KEY: ChannelParameter(type=DataValidationArtifact)}


class DataValidation(base_component.BaseComponent):
    SPEC_CLASS = DataValidationSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel,
                 schema_anomalies: types.BaseChannel, drift_anomalies: Optional[types.BaseChannel],
                 fail_on: Sequence[str], drift_severity: str):
        super().__init__(DataValidationSpec(
            examples=examples, schema=schema, schema_anomalies=schema_anomalies, drift_anomalies=drift_anomalies,
            fail_on=json.dumps(list(fail_on)), drift_severity=drift_severity,
            validation=types.Channel(type=DataValidationArtifact)))
