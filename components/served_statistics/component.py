"""ServedStatistics: the statistics of the data the served model was trained on, as the drift baseline.

ImageExampleGen has no spans, so "the previous data" is the data of the run
that produced the model TF Serving serves: the Pusher (components/pusher)
stores that run's StatisticsGen output in the version it pushes, and this
step copies it from the highest numbered version, as ServedModel finds the
model. It works wherever the pipeline runs, Kubeflow included, which has no
resolver to look up earlier runs' artifacts.

The current statistics are an input for ordering and caching only: the step
looks at the serving folder again exactly when the data has changed.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from fakeface.components.served_statistics import executor


class ServedStatisticsSpec(types.ComponentSpec):
    PARAMETERS = {executor.SERVING_MODEL_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics)}
    OUTPUTS = {executor.SERVED_STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics)}


class ServedStatistics(base_component.BaseComponent):
    SPEC_CLASS = ServedStatisticsSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics: types.BaseChannel, serving_model_dir: str):
        super().__init__(ServedStatisticsSpec(
            statistics=statistics, serving_model_dir=serving_model_dir,
            served_statistics=types.Channel(type=standard_artifacts.ExampleStatistics)))
