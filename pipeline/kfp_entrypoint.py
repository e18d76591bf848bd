"""The command of every fakeface task on Kubeflow Pipelines v2.

It is TFX's own container entrypoint (kubeflow_v2_run_executor) after one
repair. Open-source KFP hands a task its input artifacts with an empty type
(`instanceSchema: ""`): its driver reads them back from ML Metadata without
their schema. TFX's entrypoint rebuilds each input as the artifact class the
schema names, so on open-source KFP every task with inputs fails with
"'NoneType' object has no attribute 'get'" (tensorflow/tfx#7768). Every
compiled task also gets its component's input definitions
(--json_serialized_inputs_spec_args, pipeline spec 2.1), which carry each
input's type; this fills the missing types in from there and runs TFX's
entrypoint unchanged. Vertex AI, which sends the types, passes through as is.

    python -m fakeface.pipeline.kfp_entrypoint --executor_class_path ... \
        --json_serialized_invocation_args '{{$}}' --json_serialized_inputs_spec_args '{...}' [beam args]
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Mapping, Optional

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

COMMAND = ["python", "-m", "fakeface.pipeline.kfp_entrypoint"]
INVOCATION_FLAG = "--json_serialized_invocation_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"


def restore_input_types(executor_input: Mapping[str, Any], inputs_spec: Mapping[str, Any]) -> Dict[str, Any]:
    """The executor input with each untyped input artifact given its declared type."""
    declared = inputs_spec.get("artifacts", {})
    restored = json.loads(json.dumps(executor_input))
    for key, artifact_list in restored.get("inputs", {}).get("artifacts", {}).items():
        if key not in declared:
            continue
        for artifact in artifact_list.get("artifacts", []):
            kind = artifact.get("type") or {}
            if not (kind.get("instanceSchema") or kind.get("schemaTitle")):
                artifact["type"] = dict(declared[key]["artifactType"])
    return restored


def _flag_value(argv: List[str], flag: str) -> Optional[int]:
    """The index of `flag`'s value in argv, or None."""
    for index, arg in enumerate(argv[:-1]):
        if arg == flag:
            return index + 1
    return None


def repaired_argv(argv: List[str]) -> List[str]:
    """argv with the invocation's input artifact types restored from the inputs spec."""
    invocation, spec = _flag_value(argv, INVOCATION_FLAG), _flag_value(argv, INPUTS_SPEC_FLAG)
    if invocation is None or spec is None:
        return list(argv)
    repaired = list(argv)
    repaired[invocation] = json.dumps(restore_input_types(json.loads(argv[invocation]), json.loads(argv[spec])))
    return repaired


def main(argv: Optional[List[str]] = None) -> None:
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    argv = sys.argv if argv is None else argv
    sys.argv = [argv[0]] + repaired_argv(argv[1:])
    app.run(kubeflow_v2_run_executor.main, flags_parser=kubeflow_v2_run_executor._parse_flags)  # noqa: SLF001


if __name__ == "__main__":
    main()
