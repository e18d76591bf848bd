"""CuratedSchemaGen: the curated schema in `schemas/` as a Schema artifact.

Takes the schema from the installed fakeface package, where it is wherever
the code runs (a checkout, or a pipeline image on a cluster), instead of from
a path of the machine that built the pipeline. The schema's SHA-256 is an
execution parameter: editing the schema re-runs everything that depends on it
(TFX and KFP cache on parameters), and an image whose package carries another
schema fails the step with a message rather than validating against it.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from fakeface.components.curated_schema import executor


class CuratedSchemaGenSpec(types.ComponentSpec):
    PARAMETERS = {executor.SCHEMA_SHA256_KEY: ExecutionParameter(type=str)}
    INPUTS = {}
    OUTPUTS = {executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema)}


class CuratedSchemaGen(base_component.BaseComponent):
    SPEC_CLASS = CuratedSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self):
        super().__init__(CuratedSchemaGenSpec(
            schema_sha256=executor.schema_sha256(),
            schema=types.Channel(type=standard_artifacts.Schema)))
