"""Evaluator: TFX's Evaluator, whose baseline may be "nothing served yet" (components/served_model)."""

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from fakeface.components.evaluator import executor


class Evaluator(tfx.components.Evaluator):
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
