"""Executor of DataValidation: classifies the anomalies, and stops the run on a blocking one."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
from google.rpc import code_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.proto.orchestration import execution_result_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils

from fakeface.components import reporting
from fakeface.components.data_validation import anomalies as anomalies_lib
from fakeface.components.image_example_gen import executor as example_gen
from fakeface.components.image_example_gen import ingest

# Channels and parameters.
EXAMPLES_KEY = "examples"
SCHEMA_KEY = "schema"
SCHEMA_ANOMALIES_KEY = "schema_anomalies"
DRIFT_ANOMALIES_KEY = "drift_anomalies"
VALIDATION_KEY = "validation"
FAIL_ON_KEY = "fail_on"
DRIFT_SEVERITY_KEY = "drift_severity"
# What the output folder holds, and the custom properties `fakeface run` and
# the EvaluationReport read back.
VALIDATION_JSON = "validation.json"
REPORT_HTML = "report.html"
WARNINGS_PROPERTY = "warnings"
REPORT_HTML_PROPERTY = "report_html"


class DataValidationFailed(RuntimeError):
    """Blocking anomalies: str() is one line per anomaly."""


def validate(schema_anomalies: types.Artifact, drift_anomalies: Optional[types.Artifact], schema,
             fail_on: List[str], drift_severity: str) -> Dict[str, Any]:
    """What was checked, and the anomalies found, as blocking and warning lines."""
    found = anomalies_lib.read(schema_anomalies, anomalies_lib.SCHEMA, schema, drift_severity)
    checked = ["schema: the statistics of every split against the curated schema (schemas/schema.pbtxt)"]
    if drift_anomalies is not None:
        if artifact_utils.decode_split_names(drift_anomalies.split_names):
            found += anomalies_lib.read(drift_anomalies, anomalies_lib.DRIFT, schema, drift_severity)
            checked.append("drift: the train split against the train split the served model was trained on "
                           "(TFDV's L-infinity distance)")
        else:
            checked.append("drift: not checked, no served model carries the statistics of its training data")
    stop, warn = anomalies_lib.blocking(anomalies_lib.merged(found), fail_on)
    return {"fail_on": fail_on, "drift_severity": drift_severity, "checked": checked,
            "blocking": [a.line() for a in stop], "warnings": [a.line() for a in warn],
            "anomalies": [dataclasses.asdict(a) for a in stop + warn]}


def _ingest_report(examples: types.Artifact) -> Optional[Dict[str, Any]]:
    path = os.path.join(examples.uri, example_gen.REPORT_DIR_NAME, ingest.REPORT_JSON)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.load(f)


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        def single(key: str) -> Optional[types.Artifact]:
            return artifact_utils.get_single_instance(input_dict[key]) if input_dict.get(key) else None

        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(single(SCHEMA_KEY).uri))
        validation = validate(single(SCHEMA_ANOMALIES_KEY), single(DRIFT_ANOMALIES_KEY), schema,
                              json.loads(exec_properties[FAIL_ON_KEY]), exec_properties[DRIFT_SEVERITY_KEY])
        for line in validation["warnings"]:
            logging.warning("Data validation: %s", line)
        if validation["blocking"]:
            for line in validation["blocking"]:
                logging.error("Data validation, blocking: %s", line)
            message = "\n".join(validation["blocking"])
            if self._context is not None and self._context.executor_output_uri:
                # TFX's launcher (the local runner) reads this result, records
                # it in ML Metadata and stops the run. KFP's entrypoint does not
                # read it, so there the task fails by raising.
                return execution_result_pb2.ExecutorOutput(execution_result=execution_result_pb2.ExecutionResult(
                    code=code_pb2.FAILED_PRECONDITION, result_message=message))
            raise DataValidationFailed(message)

        output = artifact_utils.get_single_instance(output_dict[VALIDATION_KEY])
        fileio.makedirs(output.uri)
        with fileio.open(os.path.join(output.uri, VALIDATION_JSON), "w") as f:
            f.write(json.dumps(validation, indent=2, sort_keys=True))
        output.set_string_custom_property(WARNINGS_PROPERTY, "\n".join(validation["warnings"]))
        report = _ingest_report(single(EXAMPLES_KEY))
        if report is not None:
            path = os.path.join(output.uri, REPORT_HTML)
            with fileio.open(path, "w") as f:
                f.write(reporting.render("ingestion.html", report=report, validation=validation))
            output.set_string_custom_property(REPORT_HTML_PROPERTY, path)
            logging.info("Ingestion report with the validation: %s", path)
        return None


def read_validation(validation_uri: str) -> Dict[str, Any]:
    """The validation.json of a DataValidation output."""
    with fileio.open(os.path.join(validation_uri, VALIDATION_JSON)) as f:
        return json.load(f)
