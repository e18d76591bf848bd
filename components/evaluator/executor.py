"""TFX's Evaluator executor, without a baseline when nothing is served yet."""

from __future__ import annotations

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.evaluator import executor as tfx_executor
from tfx.types import standard_component_specs

from fakeface.components.served_model import executor as served_model


class Executor(tfx_executor.Executor):
    """Drops a ServedModel baseline that holds no model, so TFMA blesses on absolute thresholds."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        if input_dict.get(key) and not served_model.found(input_dict[key][0]):
            logging.info("No served model to compare against: blessing on the absolute thresholds")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)
