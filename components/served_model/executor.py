"""Executor of ServedModel: copies the newest version TF Serving serves into a Model artifact."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

CANDIDATE_KEY = "candidate"
SERVED_KEY = "served"
SERVING_MODEL_DIR_KEY = "serving_model_dir"
# Custom properties of the output: whether a version was found (1/0) and which.
FOUND_PROPERTY = "served_model_found"
VERSION_PROPERTY = "served_version"


def newest_version(serving_model_dir: str) -> Optional[str]:
    """The folder of the highest numbered version holding a SavedModel, as TF Serving picks it."""
    if not fileio.isdir(serving_model_dir):
        return None
    versions = []
    for name in fileio.listdir(serving_model_dir):
        name = name.rstrip("/")
        path = os.path.join(serving_model_dir, name)
        if name.isdigit() and fileio.exists(os.path.join(path, "saved_model.pb")):
            versions.append((int(name), path))
    return max(versions)[1] if versions else None


def found(baseline: types.Artifact) -> bool:
    """Whether a ServedModel output holds a model (no property: a model from elsewhere, which does)."""
    if not baseline.has_custom_property(FOUND_PROPERTY):
        return True
    # The int getter, which also reads the double Kubeflow turns every number into.
    return baseline.get_int_custom_property(FOUND_PROPERTY) == 1


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        output = artifact_utils.get_single_instance(output_dict[SERVED_KEY])
        serving_model_dir = exec_properties[SERVING_MODEL_DIR_KEY]
        served = newest_version(serving_model_dir)
        if served is None:
            output.set_int_custom_property(FOUND_PROPERTY, 0)
            logging.info("No model is served under %s yet: the Evaluator blesses on its absolute "
                         "thresholds alone", serving_model_dir)
            return
        io_utils.copy_dir(served, path_utils.serving_model_dir(output.uri))
        output.set_int_custom_property(FOUND_PROPERTY, 1)
        output.set_string_custom_property(VERSION_PROPERTY, os.path.basename(served))
        logging.info("Baseline: the served model %s", served)
