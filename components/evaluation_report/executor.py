"""Executor of EvaluationReport: scores the test split and writes the report."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from fakeface.components.evaluation_report import report as report_lib

# Channels and parameters.
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
VALIDATION_KEY = "validation"
REPORT_KEY = "report"
EVALUATOR_CONFIG_KEY = "evaluator_config"
SERVING_MODEL_DIR_KEY = "serving_model_dir"
# Custom properties of the report artifact, which `fakeface run` and
# `fakeface run-compiled` read back.
REPORT_HTML_PROPERTY = "report_html"
BLESSED_PROPERTY = "blessed"
NOT_BLESSED_BECAUSE_PROPERTY = "not_blessed_because"


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        def uri(key: str) -> str:
            return artifact_utils.get_single_uri(input_dict[key])

        report = report_lib.build(
            examples_uri=uri(EXAMPLES_KEY), model_uri=uri(MODEL_KEY),
            evaluation_uri=uri(EVALUATION_KEY), blessing_uri=uri(BLESSING_KEY),
            evaluator=json.loads(exec_properties[EVALUATOR_CONFIG_KEY]), validation_uri=uri(VALIDATION_KEY),
            serving_model_dir=exec_properties[SERVING_MODEL_DIR_KEY])
        output = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        path = report_lib.write(report, output.uri)
        output.set_string_custom_property(REPORT_HTML_PROPERTY, path)
        output.set_int_custom_property(BLESSED_PROPERTY, int(bool(report.blessed)))
        if report.failures:
            output.set_string_custom_property(NOT_BLESSED_BECAUSE_PROPERTY, "\n".join(report.failures))
            for failure in report.failures:
                logging.warning("Model %s NOT BLESSED: %s", report.model_version, failure)
        logging.info("Evaluation report: %s", path)
