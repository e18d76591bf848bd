"""Post-processing of the spec TFX compiles for Kubeflow Pipelines v2.

TFX's KubeflowV2DagRunner expresses CPU, memory and accelerators
(ResourceSpec), but nothing about where a pod may be scheduled. Open-source KFP
takes node selectors and tolerations from a second document next to the
PipelineSpec, the Kubernetes platform spec, in the format the kfp-kubernetes
extension produces and kfp's compiler writes::

    platforms:
      kubernetes:
        deploymentSpec:
          executors:
            <executor label>: {nodeSelector: {labels: {...}}, tolerations: [...]}

This module builds that document for chosen tasks, validates it against the
real protos (kfp's PlatformSpec and kfp-kubernetes' KubernetesExecutorConfig,
see kubernetes_executor_config_descriptor.py) and writes the output file:

- `.yaml`/`.yml`: the bare PipelineSpec as the first YAML document and the
  PlatformSpec as the second, which is what kfp 2.5's compiler writes
  (kfp/compiler/pipeline_spec_builder.py) and kfp.Client / the KFP UI read back.
- `.json`: TFX's Vertex-style PipelineJob wrapper, without the Kubernetes
  platform spec. kfp's own compiler refuses platform specs in JSON and Vertex AI
  Pipelines does not read them: it schedules from the ResourceSpec alone (there
  the accelerator type must be a Vertex name such as NVIDIA_TESLA_T4).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from fakeface.pipeline import kubernetes_executor_config_descriptor as k8s_descriptor

PLATFORM = "kubernetes"
YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIX = ".json"

# What Kubernetes accepts for a toleration (core/v1 Toleration).
_TOLERATION_OPERATORS = ("Equal", "Exists")
_TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


class PlatformSpecError(ValueError):
    """A compiled spec or a scheduling setting that cannot be turned into a platform spec."""


def _executor_config_class():
    # A private pool: the default pool is shared with whatever else is imported
    # and may one day hold a different version of the same file.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(struct_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(k8s_descriptor.SERIALIZED_FILE_DESCRIPTOR))
    descriptor = pool.FindMessageTypeByName("kfp_kubernetes.KubernetesExecutorConfig")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


KubernetesExecutorConfig = _executor_config_class()


def executor_label(pipeline_spec: Mapping[str, Any], task_name: str) -> str:
    """The executor label of a root-DAG task, as the compiled spec links them.

    task -> componentRef.name -> components[name].executorLabel, which must be
    a key of deploymentSpec.executors.
    """
    tasks = pipeline_spec.get("root", {}).get("dag", {}).get("tasks", {})
    if task_name not in tasks:
        raise PlatformSpecError(f"the compiled spec has no task {task_name!r}; tasks: {sorted(tasks)}")
    component_name = tasks[task_name].get("componentRef", {}).get("name", "")
    component = pipeline_spec.get("components", {}).get(component_name)
    if component is None:
        raise PlatformSpecError(f"task {task_name!r} refers to component {component_name!r}, "
                                "which the compiled spec does not define")
    label = component.get("executorLabel", "")
    if label not in pipeline_spec.get("deploymentSpec", {}).get("executors", {}):
        raise PlatformSpecError(f"component {component_name!r} of task {task_name!r} has executor "
                                f"label {label!r}, which deploymentSpec.executors does not define")
    return label


def _check_toleration(toleration: Mapping[str, Any], where: str) -> None:
    operator = toleration.get("operator", "Equal")
    if operator not in _TOLERATION_OPERATORS:
        raise PlatformSpecError(f"{where}.operator: {operator!r} is not one of {_TOLERATION_OPERATORS}")
    if toleration.get("effect", "") not in _TOLERATION_EFFECTS:
        raise PlatformSpecError(f"{where}.effect: {toleration['effect']!r} is not one of "
                                f"{[e for e in _TOLERATION_EFFECTS if e]}")
    if operator == "Exists" and toleration.get("value"):
        raise PlatformSpecError(f"{where}: operator Exists matches any value; drop value "
                                f"{toleration['value']!r}")
    if not toleration.get("key") and operator != "Exists":
        raise PlatformSpecError(f"{where}: an empty key matches every taint and needs operator Exists")


def kubernetes_executor_config(node_selector: Optional[Mapping[str, str]] = None,
                               tolerations: Sequence[Mapping[str, Any]] = (),
                               pvc_mounts: Optional[Mapping[str, str]] = None,
                               where: str = "kubeflow") -> Dict[str, Any]:
    """The Kubernetes executor config of one task, as kfp-kubernetes writes it.

    `tolerations` use the field names of a Kubernetes Pod spec (key, operator,
    value, effect, tolerationSeconds); `pvc_mounts` maps a claim name to its
    mount path. Unknown fields and wrong types are errors: the result is
    parsed strictly by the KubernetesExecutorConfig proto.
    """
    node_selector = node_selector or {}
    for key, value in node_selector.items():
        if not key or not isinstance(key, str) or not isinstance(value, str):
            raise PlatformSpecError(f"{where}.trainer_node_selector: {key!r}: {value!r} must be a "
                                    "non-empty label key and a string value")
    for index, toleration in enumerate(tolerations):
        _check_toleration(toleration, f"{where}.trainer_tolerations[{index}]")
    config: Dict[str, Any] = {}
    if node_selector:
        config["nodeSelector"] = {"labels": dict(node_selector)}
    if tolerations:
        config["tolerations"] = [dict(t) for t in tolerations]
    if pvc_mounts:
        config["pvcMount"] = [{"constant": claim, "mountPath": path} for claim, path in pvc_mounts.items()]
    try:
        message = json_format.ParseDict(config, KubernetesExecutorConfig())
    except json_format.ParseError as e:
        raise PlatformSpecError(f"{where}: not a valid Kubernetes executor config: {e}") from e
    # Round-trip, so the file holds exactly what KFP's backend will parse.
    return json_format.MessageToDict(message)


def build_platform_spec(pipeline_spec: Mapping[str, Any],
                        task_configs: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """The PlatformSpec document for `task_configs` (task name -> executor config)."""
    executors = {}
    for task_name, config in task_configs.items():
        if config:
            executors[executor_label(pipeline_spec, task_name)] = dict(config)
    if not executors:
        return {}
    document = {"platforms": {PLATFORM: {"deploymentSpec": {"executors": executors}}}}
    validate_platform_spec(document)
    return document


def validate_platform_spec(document: Mapping[str, Any]) -> None:
    """Raises PlatformSpecError unless `document` parses strictly as a PlatformSpec
    whose Kubernetes executors each parse as a KubernetesExecutorConfig."""
    try:
        json_format.ParseDict(document, pipeline_spec_pb2.PlatformSpec())
        executors = document["platforms"][PLATFORM]["deploymentSpec"]["executors"]
        for config in executors.values():
            json_format.ParseDict(config, KubernetesExecutorConfig())
    except (json_format.ParseError, KeyError, TypeError) as e:
        raise PlatformSpecError(f"not a valid KFP Kubernetes platform spec: {e!r}") from e


def restore_resources(pipeline_spec: Dict[str, Any], task_name: str, resources: Mapping[str, Any]) -> bool:
    """Sets a task's container resources if the compiled spec has none.

    TFX's compiler builds file-based ExampleGens (ImageExampleGen is one) by a
    path that drops the node's platform_config, so their container would run
    without requests or limits. Returns whether it set them.
    """
    label = executor_label(pipeline_spec, task_name)
    container = pipeline_spec["deploymentSpec"]["executors"][label].get("container")
    if container is None:
        raise PlatformSpecError(f"task {task_name!r} is not a container task")
    if container.get("resources"):
        return False
    container["resources"] = dict(resources)
    return True


def check_output_path(path: str) -> None:
    """Raises PlatformSpecError unless `path`'s suffix names a format `write` writes."""
    if not path.endswith(YAML_SUFFIXES + (JSON_SUFFIX,)):
        raise PlatformSpecError(f"{path}: the output must end with .yaml or .yml (Kubeflow Pipelines) "
                                "or .json (Vertex AI PipelineJob)")


def write(path: str, pipeline_job: Mapping[str, Any], platform_spec: Optional[Mapping[str, Any]]) -> str:
    """Writes the compiled pipeline in the format `path`'s suffix selects; returns the format."""
    check_output_path(path)
    if path.endswith(YAML_SUFFIXES):
        documents: List[Any] = [pipeline_job["pipelineSpec"]]
        if platform_spec:
            documents.append(platform_spec)
        text = (f"# PIPELINE DEFINITION\n# Name: {pipeline_job['pipelineSpec']['pipelineInfo']['name']}\n"
                "# Compiled by `fakeface compile`: PipelineSpec, then the Kubernetes PlatformSpec.\n"
                + yaml.safe_dump_all(documents, sort_keys=True))
        fmt = "kfp-yaml"
    else:
        text = json.dumps(pipeline_job, sort_keys=True, indent=2) + "\n"
        fmt = "pipeline-job-json"
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    # Never leave a half-written spec where an upload or schedule would pick it up.
    os.replace(tmp, path)
    return fmt

