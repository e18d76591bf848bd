"""What a pipeline run did, read back from ML Metadata and TFMA output."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration.portable.mlmd import execution_lib

from fakeface.components.data_validation import executor as validation_executor
from fakeface.components.data_validation.component import DataValidation, DataValidationArtifact
from fakeface.components.evaluation_report import executor as report_executor
from fakeface.components.evaluation_report.component import EvaluationReportArtifact

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class RunSummary:
    run_id: str
    # node id (e.g. "Trainer") -> final execution state ("COMPLETE", "CACHED", ...)
    executions: Dict[str, str]
    evaluation_uri: Optional[str]
    blessed: Optional[bool]
    pushed: Optional[bool]
    pushed_destination: Optional[str]
    model_uri: Optional[str]
    ingest_report: Optional[str] = None  # the HTML report of ImageExampleGen
    # The same report with the data validation in it, which DataValidation writes.
    validation_report: Optional[str] = None
    report_html: Optional[str] = None  # the EvaluationReport's page
    not_blessed_because: List[str] = dataclasses.field(default_factory=list)
    # DataValidation's anomalies, one line each: those that stopped the run
    # before Transform, and those that only warn.
    validation_blocking: List[str] = dataclasses.field(default_factory=list)
    validation_warnings: List[str] = dataclasses.field(default_factory=list)


def _store(metadata_path: str) -> metadata_store.MetadataStore:
    if not os.path.isfile(metadata_path):
        raise LookupError(f"{metadata_path}: no ML Metadata store here; no pipeline has run with this config")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def _outputs(store, execution_id: int) -> List[metadata_store_pb2.Artifact]:
    events = store.get_events_by_execution_ids([execution_id])
    ids = [e.artifact_id for e in events if e.type in (
        metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    return store.get_artifacts_by_id(ids) if ids else []


def _custom(artifact: metadata_store_pb2.Artifact, key: str):
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    return value.string_value or value.int_value


def _runs(store, pipeline_name: str) -> List[metadata_store_pb2.Context]:
    return [c for c in store.get_contexts_by_type("pipeline_run")
            if any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))]


def _node_executions(store, run: metadata_store_pb2.Context, pipeline_name: str):
    """(node id, execution) of every execution of the run `run`."""
    prefix = pipeline_name + "."
    for execution in store.get_executions_by_context(run.id):
        node = next((c.name[len(prefix):] for c in store.get_contexts_by_execution(execution.id)
                     if c.type == "node" or c.name.startswith(prefix)), None)
        if node is not None:
            yield node, execution


def latest_run(metadata_path: str, pipeline_name: str) -> RunSummary:
    """Summarises the most recent run of `pipeline_name` recorded at `metadata_path`."""
    store = _store(metadata_path)
    runs = _runs(store, pipeline_name)
    if not runs:
        raise LookupError(f"{metadata_path}: no run of pipeline {pipeline_name!r} is recorded")
    return _summarise(store, max(runs, key=lambda c: (c.create_time_since_epoch, c.id)), pipeline_name)


def _run(store, pipeline_name: str, run_id: str) -> Optional[metadata_store_pb2.Context]:
    return next((c for c in _runs(store, pipeline_name) if c.name == run_id), None)


def run_summary(metadata_path: str, pipeline_name: str, run_id: str) -> RunSummary:
    """Summarises the run `run_id` of `pipeline_name`, whatever ran after it."""
    store = _store(metadata_path)
    run = _run(store, pipeline_name, run_id)
    if run is None:
        raise LookupError(f"{metadata_path}: no run {run_id!r} of pipeline {pipeline_name!r} is recorded")
    return _summarise(store, run, pipeline_name)


def node_state(metadata_path: str, pipeline_name: str, run_id: str, node: str) -> Optional[str]:
    """The state of `node`'s execution in run `run_id` ("COMPLETE", "CACHED", ...); None if it has none."""
    store = _store(metadata_path)
    run = _run(store, pipeline_name, run_id)
    if run is None:
        return None
    states = [_STATE_NAMES.get(e.last_known_state, "UNKNOWN")
              for name, e in _node_executions(store, run, pipeline_name) if name == node]
    return states[-1] if states else None


def _summarise(store, run: metadata_store_pb2.Context, pipeline_name: str) -> RunSummary:
    summary = RunSummary(run.name, {}, None, None, None, None, None)
    for node, execution in _node_executions(store, run, pipeline_name):
        summary.executions[node] = _STATE_NAMES.get(execution.last_known_state, "UNKNOWN")
        if node == DataValidation.__name__ and execution.last_known_state == metadata_store_pb2.Execution.FAILED:
            result = execution_lib.get_execution_result(execution, ignore_parse_errors=True)
            summary.validation_blocking = result.result_message.splitlines() if result else []
        for artifact in _outputs(store, execution.id):
            type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
            if type_name == "ModelEvaluation":
                summary.evaluation_uri = artifact.uri
            elif type_name == "ModelBlessing":
                summary.blessed = bool(_custom(artifact, "blessed"))
            elif type_name == "PushedModel":
                summary.pushed = bool(_custom(artifact, "pushed"))
                summary.pushed_destination = _custom(artifact, "pushed_destination") or None
            elif type_name == "Model" and node == "Trainer":
                summary.model_uri = artifact.uri
            elif type_name == "Examples" and node == "ImageExampleGen":
                summary.ingest_report = _custom(artifact, "ingest_report") or None
            elif type_name == DataValidationArtifact.TYPE_NAME:
                summary.validation_report = _custom(artifact, validation_executor.REPORT_HTML_PROPERTY) or None
                warnings = _custom(artifact, validation_executor.WARNINGS_PROPERTY)
                summary.validation_warnings = warnings.split("\n") if warnings else []
            elif type_name == EvaluationReportArtifact.TYPE_NAME:
                summary.report_html = _custom(artifact, report_executor.REPORT_HTML_PROPERTY) or None
                reasons = _custom(artifact, report_executor.NOT_BLESSED_BECAUSE_PROPERTY)
                summary.not_blessed_because = reasons.split("\n") if reasons else []
    return summary


def ingest_warnings(report_html: str) -> List[str]:
    """The shortcut warnings of an ingestion report (its report.json beside the HTML)."""
    import json

    import tensorflow as tf

    path = os.path.join(os.path.dirname(report_html), "report.json")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)["warnings"]


def report_summary(report_html: str) -> Dict:
    """The metrics.json beside an evaluation report (components/evaluation_report/)."""
    import json

    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(os.path.dirname(report_html), "metrics.json")) as f:
        return json.load(f)["model"]


def source_table(report_html: str) -> str:
    """A plain-text table of every source, with the number that matters for it."""
    data = report_summary(report_html)
    lines = [f"{'source':<18} {'label':<5} {'examples':>8}  {'accuracy':>8}  what it means", "-" * 72]
    for row in data["sources"]:
        accuracy = row["accuracy_original"]
        if row["label"] == "fake":
            meaning = f"detection rate {accuracy:.1%}"
            if row.get("auc_vs_real") is not None:
                meaning += f", AUC vs all real {row['auc_vs_real']:.3f}"
        else:
            meaning = f"false-positive rate {1.0 - accuracy:.1%}"
            if not row.get("checked_for_blessing", True):
                meaning += f" (under {data['settings']['min_real_images']} images: not checked)"
        lines.append(f"{row['source']:<18} {row['label']:<5} {row['examples']:>8}  {accuracy:>8.3f}  {meaning}")
    overall = data["overall"]
    lines.append("-" * 72)
    auc = overall.get("auc")
    lines.append(f"{'overall':<18} {'':<5} {overall['examples']:>8}  {overall['accuracy']:>8.3f}  "
                 f"AUC {'n/a' if auc is None else f'{auc:.3f}'}, threshold {data['threshold']:.4f}")
    return "\n".join(lines)


def evaluation_inputs(metadata_path: str, evaluation_uri: str) -> Dict[str, Optional[str]]:
    """The examples, model and blessing of the Evaluator run that wrote `evaluation_uri`, and the
    data validation its EvaluationReport was given."""
    store = _store(metadata_path)
    uri = evaluation_uri.rstrip("/")
    matches = [a for a in store.get_artifacts_by_uri(uri) or store.get_artifacts_by_uri(uri + "/")]
    if not matches:
        raise LookupError(f"{evaluation_uri}: not an Evaluator output recorded in {metadata_path}")
    events = store.get_events_by_artifact_ids([matches[-1].id])
    execution_id = next(e.execution_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT)
    found: Dict[str, Optional[str]] = {"evaluation": matches[-1].uri, "examples": None, "model": None,
                                       "blessing": None, "validation": None}
    for event in store.get_events_by_execution_ids([execution_id]):
        artifact = store.get_artifacts_by_id([event.artifact_id])[0]
        type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
        is_input = event.type == metadata_store_pb2.Event.INPUT
        key = event.path.steps[0].key if event.path.steps else ""
        if is_input and type_name == "Examples":
            found["examples"] = artifact.uri
        elif is_input and type_name == "Model" and key == "model":
            found["model"] = artifact.uri
        elif not is_input and type_name == "ModelBlessing":
            found["blessing"] = artifact.uri
    readers = [e.execution_id for e in events if e.type == metadata_store_pb2.Event.INPUT]
    for event in store.get_events_by_execution_ids(readers) if readers else []:
        artifact = store.get_artifacts_by_id([event.artifact_id])[0]
        if (event.type == metadata_store_pb2.Event.INPUT
                and store.get_artifact_types_by_id([artifact.type_id])[0].name == DataValidationArtifact.TYPE_NAME):
            found["validation"] = artifact.uri
    return found
