"""The command of every fakeface task on Kubeflow Pipelines v2.

It is TFX's own container entrypoint (kubeflow_v2_run_executor) after two
repairs of the artifact types it is handed, each of which it would otherwise
fail to import:

* Open-source KFP hands a task its input artifacts with an empty type
  (`instanceSchema: ""`): its driver reads them back from ML Metadata without
  their schema, and every task with inputs fails with "'NoneType' object has
  no attribute 'get'" (tensorflow/tfx#7768). Every compiled task also gets its
  component's input definitions (--json_serialized_inputs_spec_args, pipeline
  spec 2.1), which carry each input's type; the missing types come from there.
* TFX imports a custom artifact type by its schema title, the type's name,
  which KFP allows two parts only ("fakeface.EvaluationReport"); the title
  becomes the class's import path.

Vertex AI, which sends the types, gets only the second repair. In every
task, TFX's example readers batch by bytes (reader_batches.py).

    python -m fakeface.pipeline.kfp_entrypoint --executor_class_path ... \
        --json_serialized_invocation_args '{{$}}' --json_serialized_inputs_spec_args '{...}' [beam args]
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Mapping, Optional

import yaml

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from fakeface.components.data_validation.component import DataValidationArtifact
from fakeface.components.evaluation_report.component import EvaluationReportArtifact

COMMAND = ["python", "-m", "fakeface.pipeline.kfp_entrypoint"]
INVOCATION_FLAG = "--json_serialized_invocation_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
# Custom artifact types, by type name, to their import paths.
CUSTOM_TYPES = {cls.TYPE_NAME: f"{cls.__module__}.{cls.__qualname__}"
                for cls in (EvaluationReportArtifact, DataValidationArtifact)}


def _importable(kind: Mapping[str, Any]) -> Dict[str, Any]:
    """An artifact type whose schema title TFX can import."""
    kind = dict(kind)
    schema = yaml.safe_load(kind.get("instanceSchema") or "") or {}
    if isinstance(schema, dict) and schema.get("title") in CUSTOM_TYPES:
        schema["title"] = CUSTOM_TYPES[schema["title"]]
        kind["instanceSchema"] = yaml.safe_dump(schema, sort_keys=False)
    return kind


def restore_input_types(executor_input: Mapping[str, Any], inputs_spec: Mapping[str, Any]) -> Dict[str, Any]:
    """The executor input with each untyped input artifact given its declared
    type, and every artifact's type importable."""
    declared = inputs_spec.get("artifacts", {})
    restored = json.loads(json.dumps(executor_input))
    for direction in ("inputs", "outputs"):
        for key, artifact_list in restored.get(direction, {}).get("artifacts", {}).items():
            for artifact in artifact_list.get("artifacts", []):
                kind = artifact.get("type") or {}
                if direction == "inputs" and key in declared and not (
                        kind.get("instanceSchema") or kind.get("schemaTitle")):
                    kind = declared[key]["artifactType"]
                artifact["type"] = _importable(kind)
    return restored


def _flag_value(argv: List[str], flag: str) -> Optional[int]:
    """The index of `flag`'s value in argv, or None."""
    for index, arg in enumerate(argv[:-1]):
        if arg == flag:
            return index + 1
    return None


def repaired_argv(argv: List[str]) -> List[str]:
    """argv with the invocation's artifact types repaired (restore_input_types)."""
    invocation, spec = _flag_value(argv, INVOCATION_FLAG), _flag_value(argv, INPUTS_SPEC_FLAG)
    if invocation is None:
        return list(argv)
    repaired = list(argv)
    inputs_spec = json.loads(argv[spec]) if spec is not None else {}
    repaired[invocation] = json.dumps(restore_input_types(json.loads(argv[invocation]), inputs_spec))
    return repaired


def main(argv: Optional[List[str]] = None) -> None:
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    from fakeface.pipeline import reader_batches

    def run_executor(parsed_argv) -> None:
        reader_batches.by_bytes()
        kubeflow_v2_run_executor.main(parsed_argv)

    argv = sys.argv if argv is None else argv
    sys.argv = [argv[0]] + repaired_argv(argv[1:])
    app.run(run_executor, flags_parser=kubeflow_v2_run_executor._parse_flags)  # noqa: SLF001


if __name__ == "__main__":
    main()
