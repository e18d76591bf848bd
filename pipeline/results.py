"""What the last pipeline run did, read back from ML Metadata and TFMA output."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from fakeface import features
from fakeface.pipeline import evaluation

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


@dataclasses.dataclass
class SliceRow:
    value: str
    example_count: int
    accuracy: float
    auc: float  # NaN where the slice holds one class only
    false_positive_rate: float
    recall: float


def _store(metadata_path: str) -> metadata_store.MetadataStore:
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


def latest_run(metadata_path: str, pipeline_name: str) -> RunSummary:
    """Summarises the most recent run of `pipeline_name` recorded at `metadata_path`."""
    store = _store(metadata_path)
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))]
    if not runs:
        raise LookupError(f"{metadata_path}: no run of pipeline {pipeline_name!r} is recorded")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    summary = RunSummary(run.name, {}, None, None, None, None, None)
    prefix = pipeline_name + "."
    for execution in store.get_executions_by_context(run.id):
        node = next((c.name[len(prefix):] for c in store.get_contexts_by_execution(execution.id)
                     if c.type == "node" or c.name.startswith(prefix)), None)
        if node is None:
            continue
        summary.executions[node] = _STATE_NAMES.get(execution.last_known_state, "UNKNOWN")
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
    return summary


def ingest_warnings(report_html: str) -> List[str]:
    """The shortcut warnings of an ingestion report (its report.json beside the HTML)."""
    import json
    import os

    import tensorflow as tf

    path = os.path.join(os.path.dirname(report_html), "report.json")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)["warnings"]


def _metric(metrics: Dict[str, Dict], name: str) -> float:
    for key, value in metrics.items():
        if key == name or key.startswith(name + "@"):
            return float(value.get("doubleValue", math.nan))
    return math.nan


def slice_rows(evaluation_uri: str, feature: str) -> Tuple[Dict[str, float], List[SliceRow]]:
    """Overall metrics, and one row per value of `feature`, from a TFMA result."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    overall: Dict[str, float] = {}
    rows: List[SliceRow] = []
    for slice_key, metrics_by_output in result.slicing_metrics:
        metrics = metrics_by_output[""][""]
        if not slice_key:
            overall = {name: _metric(metrics, name) for name in (
                "example_count", evaluation.AUC, evaluation.ACCURACY, "fall_out", "recall", "precision")}
            continue
        if len(slice_key) != 1 or slice_key[0][0] != feature:
            continue
        value = slice_key[0][1]
        rows.append(SliceRow(
            value=value.decode() if isinstance(value, bytes) else str(value),
            example_count=int(_metric(metrics, "example_count")),
            accuracy=_metric(metrics, evaluation.ACCURACY),
            auc=_metric(metrics, evaluation.AUC),
            false_positive_rate=_metric(metrics, "fall_out"),
            recall=_metric(metrics, "recall")))
    return overall, sorted(rows, key=lambda r: r.value)


def source_table(evaluation_uri: str, labels: Dict[str, int]) -> str:
    """A plain-text table of every source slice, with the number that matters for it."""
    overall, rows = slice_rows(evaluation_uri, features.SOURCE)
    lines = [f"{'source':<18} {'label':<5} {'examples':>8}  {'accuracy':>8}  what it means",
             "-" * 72]
    for row in rows:
        label = labels.get(row.value)
        if label == features.FAKE:
            meaning = f"detection rate {row.accuracy:.1%}"
        elif label == features.REAL:
            meaning = f"false-positive rate {1.0 - row.accuracy:.1%}"
        else:
            meaning = ""
        label_name = features.LABEL_NAMES.get(label, "?")
        lines.append(f"{row.value:<18} {label_name:<5} {row.example_count:>8}  {row.accuracy:>8.3f}  {meaning}")
    lines.append("-" * 72)
    lines.append(f"{'overall':<18} {'':<5} {int(overall.get('example_count', 0)):>8}  "
                 f"{overall.get(evaluation.ACCURACY, math.nan):>8.3f}  "
                 f"AUC {overall.get(evaluation.AUC, math.nan):.3f}")
    return "\n".join(lines)
