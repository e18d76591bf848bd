"""Executor of ServedStatistics: the statistics the served model's training data had."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from fakeface.components.served_model import executor as served_model

STATISTICS_KEY = "statistics"
SERVED_STATISTICS_KEY = "served_statistics"
SERVING_MODEL_DIR_KEY = "serving_model_dir"
# Where in a pushed version the Pusher (components/pusher) keeps the
# statistics of the run that trained it: assets.extra travels with a
# SavedModel, and TF Serving does not load it.
STATISTICS_DIR = os.path.join("assets.extra", "statistics")
_SPLIT_PREFIX = "Split-"
# Custom properties of the output: whether statistics were found (1/0), and whose.
FOUND_PROPERTY = "served_statistics_found"
VERSION_PROPERTY = "served_version"
NOT_FOUND_BECAUSE_PROPERTY = "not_found_because"


def found(statistics: types.Artifact) -> bool:
    """Whether a ServedStatistics output holds statistics (no property: statistics from elsewhere, which do)."""
    if not statistics.has_custom_property(FOUND_PROPERTY):
        return True
    # The int getter, which also reads the double Kubeflow turns every number into.
    return statistics.get_int_custom_property(FOUND_PROPERTY) == 1


def _splits(statistics_dir: str) -> List[str]:
    names = [name.rstrip("/") for name in fileio.listdir(statistics_dir)]
    return sorted(name[len(_SPLIT_PREFIX):] for name in names if name.startswith(_SPLIT_PREFIX))


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        output = artifact_utils.get_single_instance(output_dict[SERVED_STATISTICS_KEY])
        serving_model_dir = exec_properties[SERVING_MODEL_DIR_KEY]
        served = served_model.newest_version(serving_model_dir)
        statistics_dir = os.path.join(served, STATISTICS_DIR) if served else None
        if served is None:
            reason = f"no model is served under {serving_model_dir} yet"
        elif not fileio.isdir(statistics_dir) or not _splits(statistics_dir):
            reason = f"the served version {served} carries no statistics of its training data"
        else:
            io_utils.copy_dir(statistics_dir, output.uri)
            output.split_names = artifact_utils.encode_split_names(_splits(statistics_dir))
            output.set_int_custom_property(FOUND_PROPERTY, 1)
            output.set_string_custom_property(VERSION_PROPERTY, os.path.basename(served))
            logging.info("Drift baseline: the statistics of the served version %s", served)
            return
        output.set_int_custom_property(FOUND_PROPERTY, 0)
        output.set_string_custom_property(NOT_FOUND_BECAUSE_PROPERTY, reason)
        logging.info("No drift baseline: %s", reason)
