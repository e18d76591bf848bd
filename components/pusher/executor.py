"""TFX's Pusher executor, which also stores the run's statistics in the version it pushes."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from fakeface.components.served_statistics import executor as served_statistics

STATISTICS_KEY = "statistics"
# Set by TFX's executor on the PushedModel: 1 when pushed, and where to.
_PUSHED_PROPERTY = "pushed"
_PUSHED_DESTINATION_PROPERTY = "pushed_destination"


class Executor(tfx_executor.Executor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if pushed.get_int_custom_property(_PUSHED_PROPERTY) != 1:
            return
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        destination = os.path.join(pushed.get_string_custom_property(_PUSHED_DESTINATION_PROPERTY),
                                   served_statistics.STATISTICS_DIR)
        io_utils.copy_dir(statistics.uri, destination)
        logging.info("The statistics the model was trained on: %s", destination)
