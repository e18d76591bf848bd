"""TFX's DistributionValidator executor, without a baseline when the served model has no statistics."""

from __future__ import annotations

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.distribution_validator import executor as tfx_executor
from tfx.types import standard_component_specs

from fakeface.components.served_statistics import executor as served_statistics


class Executor(tfx_executor.Executor):
    """Drops a ServedStatistics baseline that holds none, so TFX records "no baseline" rather than failing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        key = standard_component_specs.BASELINE_STATISTICS_KEY
        if input_dict.get(key) and not served_statistics.found(input_dict[key][0]):
            logging.info("No statistics of a served model to compare with: drift is not checked")
            input_dict = dict(input_dict, **{key: []})
        return super().Do(input_dict, output_dict, exec_properties)
