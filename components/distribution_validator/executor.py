"""TFX's DistributionValidator executor, without a baseline when the served model has no statistics."""

from __future__ import annotations

from typing import Any, Dict, List

from absl import logging
from tensorflow_data_validation.anomalies.proto import custom_validation_config_pb2
from tfx import types
from tfx.components.distribution_validator import executor as tfx_executor
from tfx.proto import distribution_validator_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from fakeface.components.served_statistics import executor as served_statistics

# The spec's proto parameters. TFX's local launcher hands them to the
# executor as protos; Kubeflow's run executor as the JSON the compiled spec
# holds, which TFX's executor would read as a string.
_PROTO_PARAMETERS = {
    standard_component_specs.DISTRIBUTION_VALIDATOR_CONFIG_KEY: distribution_validator_pb2.DistributionValidatorConfig,
    standard_component_specs.CUSTOM_VALIDATION_CONFIG_KEY: custom_validation_config_pb2.CustomValidationConfig,
}


def as_protos(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """`exec_properties` with its proto parameters parsed where they arrive as JSON."""
    parsed = dict(exec_properties)
    for key, proto_type in _PROTO_PARAMETERS.items():
        if isinstance(parsed.get(key), str):
            parsed[key] = proto_utils.json_to_proto(parsed[key], proto_type())
    return parsed


class Executor(tfx_executor.Executor):
    """Drops a ServedStatistics baseline that holds none, so TFX records "no baseline" rather than failing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        key = standard_component_specs.BASELINE_STATISTICS_KEY
        if input_dict.get(key) and not served_statistics.found(input_dict[key][0]):
            logging.info("No statistics of a served model to compare with: drift is not checked")
            input_dict = dict(input_dict, **{key: []})
        return super().Do(input_dict, output_dict, as_protos(exec_properties))
