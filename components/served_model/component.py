"""ServedModel: the model being served, as the Evaluator's baseline.

A scheduled retrain must not replace the served model with a worse one, so
the Evaluator compares the candidate against what TF Serving serves: the
highest numbered version under the Pusher's destination. It works wherever
the pipeline runs, including Kubeflow Pipelines, which has no resolver to
look up earlier runs' models.

The candidate is an input only for ordering and caching: the step looks at
the serving folder after training, and its cached result is reused exactly
when the candidate is, so an unchanged re-run neither compares a model with
itself nor pushes it twice.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from fakeface.components.served_model import executor


class ServedModelSpec(types.ComponentSpec):
    PARAMETERS = {executor.SERVING_MODEL_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {executor.CANDIDATE_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {executor.SERVED_KEY: ChannelParameter(type=standard_artifacts.Model)}


class ServedModel(base_component.BaseComponent):
    SPEC_CLASS = ServedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, candidate: types.BaseChannel, serving_model_dir: str):
        super().__init__(ServedModelSpec(
            candidate=candidate, serving_model_dir=serving_model_dir,
            served=types.Channel(type=standard_artifacts.Model)))
