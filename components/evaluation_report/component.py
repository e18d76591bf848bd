"""EvaluationReport: the report of every Evaluator run, as an artifact of its own.

Runs after the Evaluator whether or not the model was blessed: a model that
was refused needs its report most.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from fakeface.components.data_validation.component import DataValidationArtifact
from fakeface.components.evaluation_report import executor


class EvaluationReportArtifact(types.Artifact):
    """A folder with report.html, metrics.json and the CSVs (report.py beside this file)."""

    # namespace.Name: the form Kubeflow's compiler takes for custom types.
    TYPE_NAME = "fakeface.EvaluationReport"


class EvaluationReportSpec(types.ComponentSpec):
    PARAMETERS = {executor.EVALUATOR_CONFIG_KEY: ExecutionParameter(type=str),
                  executor.SERVING_MODEL_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.VALIDATION_KEY: ChannelParameter(type=DataValidationArtifact),
    }
    OUTPUTS = {executor.REPORT_KEY: ChannelParameter(type=EvaluationReportArtifact)}


class EvaluationReport(base_component.BaseComponent):
    SPEC_CLASS = EvaluationReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 evaluation: types.BaseChannel, blessing: types.BaseChannel, validation: types.BaseChannel,
                 evaluator_config: Dict[str, Any], serving_model_dir: str):
        """`evaluator_config`: the evaluator section of the pipeline config, as a dict;
        `serving_model_dir`: TF Serving's model base path, where the model's served version is read."""
        super().__init__(EvaluationReportSpec(
            examples=examples, model=model, evaluation=evaluation, blessing=blessing, validation=validation,
            evaluator_config=json.dumps(evaluator_config, sort_keys=True),
            serving_model_dir=serving_model_dir,
            report=types.Channel(type=EvaluationReportArtifact)))
