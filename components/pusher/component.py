"""Pusher: TFX's, which also stores the statistics of the data the model was trained on in the pushed version.

The version folder TF Serving serves then carries, in assets.extra/statistics/,
the StatisticsGen output of the run that trained it: the next run's drift
check compares its data with it (components/served_statistics).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter

from fakeface.components.pusher import executor


class PusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {**standard_component_specs.PusherSpec.INPUTS,
              executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics)}


class Pusher(base_component.BaseComponent):
    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 statistics: types.BaseChannel, push_destination: pusher_pb2.PushDestination):
        super().__init__(PusherSpec(
            model=model, model_blessing=model_blessing, statistics=statistics,
            push_destination=push_destination,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
