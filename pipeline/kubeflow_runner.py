"""`fakeface compile`: create_pipeline() compiled for Kubeflow Pipelines v2.

The graph is the one every runner uses; the `kubeflow` section of the config
only chooses where things live on the cluster, which images run the steps and
what each step may use. TFX's KubeflowV2DagRunner turns it into a PipelineSpec,
kfp_platform adds what TFX cannot express (scheduling the Trainer onto the GPU
node pool) and writes the file.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner, pipeline_builder

from fakeface.pipeline import config as config_lib
from fakeface.pipeline import kfp_platform, pipeline

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

# Kubernetes quantity suffixes, converted to the GB (10^9 bytes) that
# ResourceSpec.memory_limit holds, as kfp's own PipelineTask.set_memory_limit does.
_MEMORY_UNITS = {"": 1e-9, "K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3, "P": 1e6, "E": 1e9,
                 "Ki": 2**10 / 1e9, "Mi": 2**20 / 1e9, "Gi": 2**30 / 1e9, "Ti": 2**40 / 1e9,
                 "Pi": 2**50 / 1e9, "Ei": 2**60 / 1e9}


def _cpu(value: str, where: str) -> float:
    match = re.fullmatch(r"(\d*\.?\d+)(m?)", value)
    if not match or float(match.group(1)) <= 0:
        raise config_lib.ConfigError(f"{where}: {value!r} is not a CPU quantity such as '2', '0.5' or '500m'")
    return float(match.group(1)) / (1000 if match.group(2) else 1)


def _memory_gb(value: str, where: str) -> float:
    match = re.fullmatch(r"(\d+)(|[KMGTPE]i?)", value)
    if not match or int(match.group(1)) <= 0:
        raise config_lib.ConfigError(f"{where}: {value!r} is not a memory quantity such as '8G' or '512Mi'")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def resource_specs(kubeflow: config_lib.KubeflowConfig) -> Dict[str, ResourceSpec]:
    """ResourceSpecs by role: "default" for every step but the Trainer, "trainer".

    Only limits are set: Kubernetes makes a container's requests equal to its
    limits when it has none, so each step gets exactly what it is given
    (Guaranteed QoS), and Vertex AI sizes its machines from the limits.
    """
    default = ResourceSpec(cpu_limit=_cpu(kubeflow.cpu, "kubeflow.cpu"),
                           memory_limit=_memory_gb(kubeflow.memory, "kubeflow.memory"))
    trainer = ResourceSpec(cpu_limit=_cpu(kubeflow.trainer_cpu, "kubeflow.trainer_cpu"),
                           memory_limit=_memory_gb(kubeflow.trainer_memory, "kubeflow.trainer_memory"))
    if kubeflow.trainer_accelerator_count < 0:
        raise config_lib.ConfigError("kubeflow.trainer_accelerator_count: must be 0 (CPU) or more")
    if kubeflow.trainer_accelerator_count:
        if not kubeflow.trainer_accelerator_type:
            raise config_lib.ConfigError("kubeflow.trainer_accelerator_type: needed when "
                                         "trainer_accelerator_count is above 0, e.g. 'nvidia.com/gpu'")
        trainer.accelerator.type = kubeflow.trainer_accelerator_type
        trainer.accelerator.count = kubeflow.trainer_accelerator_count
    return {"default": default, "trainer": trainer}


def cluster_config(config: config_lib.PipelineConfig) -> config_lib.PipelineConfig:
    """A copy of `config` laid out for the cluster; `config` itself is left as it is."""
    kubeflow = config.kubeflow
    return dataclasses.replace(
        config,
        # By import path, from the package installed in the images: with
        # module_file, TFX would build a wheel of the module at compile time and
        # upload it to pipeline_root, which needs bucket credentials and network
        # where the spec is compiled, and ties the spec to that one upload.
        code_source="installed",
        pipeline_root=kubeflow.pipeline_root,
        serving_model_dir=kubeflow.serving_model_dir,
        # Open-source KFP v2 rejects resolver tasks ("resolver executors not
        # implemented"), so there is no baseline model to compare against.
        evaluator=dataclasses.replace(config.evaluator, baseline="none"),
        beam_pipeline_args=list(kubeflow.beam_pipeline_args or config.beam_pipeline_args))


def _cluster_warnings(config: config_lib.PipelineConfig) -> List[str]:
    """Paths in the spec that only exist on the machine that compiled it."""
    paths = {
        "catalog": config.catalog_path,
        "trainer backbone handle": pipeline.backbone_handle(config),
        "kubeflow.pipeline_root": config.pipeline_root_path,
        "kubeflow.serving_model_dir": config.serving_model_dir_path,
    }
    return [f"{name} {path!r} is a local path: the cluster's pods will not find it unless it is "
            "mounted there (use a bucket URL such as gs://...)"
            for name, path in paths.items() if "://" not in path]


def compile_pipeline(config: config_lib.PipelineConfig, output_path: str) -> Dict[str, Any]:
    """Compiles the pipeline for Kubeflow Pipelines v2 and writes it to `output_path`.

    `.yaml`/`.yml` is open-source KFP's format (PipelineSpec plus Kubernetes
    PlatformSpec), `.json` the Vertex AI PipelineJob (see kfp_platform).
    Returns what was written: path, format, tasks, the Trainer's task and
    executor label, and warnings about settings the cluster cannot use.
    """
    if not output_path.endswith(kfp_platform.YAML_SUFFIXES + (kfp_platform.JSON_SUFFIX,)):
        raise kfp_platform.PlatformSpecError(
            f"{output_path}: the output must end with .yaml or .yml (Kubeflow Pipelines) "
            "or .json (Vertex AI PipelineJob)")
    cluster = cluster_config(config)
    kubeflow = cluster.kubeflow
    resources = resource_specs(kubeflow)
    tfx_pipeline = pipeline.create_pipeline(cluster)

    trainers = [c for c in tfx_pipeline.components if isinstance(c, tfx.components.Trainer)]
    if len(trainers) != 1:
        raise kfp_platform.PlatformSpecError(f"expected one Trainer in the pipeline, found {len(trainers)}")
    trainer_id = trainers[0].id
    resources_by_task = {}
    for component in tfx_pipeline.components:
        if isinstance(component, tfx.dsl.Resolver):
            continue
        spec = resources["trainer"] if component.id == trainer_id else resources["default"]
        component.with_platform_config(spec)
        resources_by_task[component.id] = spec

    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            # A mapping is per component id; the default key covers the rest.
            default_image={pipeline_builder.DEFAULT_IMAGE_PATH_KEY: kubeflow.image,
                           trainer_id: kubeflow.trainer_image}))
    pipeline_job = runner.run(tfx_pipeline, write_out=False)
    pipeline_spec = pipeline_job["pipelineSpec"]

    for task_name, spec in resources_by_task.items():
        kfp_platform.restore_resources(pipeline_spec, task_name, json_format.MessageToDict(spec))
    platform_spec = kfp_platform.build_platform_spec(pipeline_spec, {
        trainer_id: kfp_platform.kubernetes_executor_config(
            kubeflow.trainer_node_selector, kubeflow.trainer_tolerations)})
    written_format = kfp_platform.write(
        output_path, pipeline_job,
        platform_spec if output_path.endswith(kfp_platform.YAML_SUFFIXES) else None)

    return {
        "path": output_path,
        "format": written_format,
        "tasks": sorted(pipeline_spec["root"]["dag"]["tasks"]),
        "trainer_task": trainer_id,
        "trainer_executor": kfp_platform.executor_label(pipeline_spec, trainer_id),
        "platform_spec": bool(platform_spec) and written_format == "kfp-yaml",
        "warnings": _cluster_warnings(cluster),
    }

