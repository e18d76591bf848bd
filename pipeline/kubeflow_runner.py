"""`fakeface compile`: create_pipeline() compiled for Kubeflow Pipelines v2.

The graph is the one every runner uses; the `kubeflow` section of the config
only chooses where things live on the cluster, which images run the steps and
what each step may use. TFX's KubeflowV2DagRunner turns it into a PipelineSpec
(schema 2.1, the only one open-source KFP accepts); this module then adds
what TFX cannot express: the pipeline root, requests beside limits, the
Trainer's retry policy, and (kfp_platform) the Kubernetes settings of
scheduling and volumes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Mapping

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner, pipeline_builder

from fakeface import catalog as catalog_lib
from fakeface.components.evaluation_report.component import EvaluationReport
from fakeface.components.image_example_gen.component import ImageExampleGen
from fakeface.components.pusher.component import Pusher
from fakeface.components.served_model.component import ServedModel
from fakeface.components.served_statistics.component import ServedStatistics
from fakeface.pipeline import config as config_lib
from fakeface.pipeline import kfp_entrypoint, kfp_platform, pipeline

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

# The steps that run Beam or TFMA over the whole dataset (kubeflow.beam_resources).
BEAM_STEPS = (ImageExampleGen, tfx.components.StatisticsGen, tfx.components.Transform,
              tfx.components.Evaluator, EvaluationReport)
# The steps that read or write serving_model_dir, and so mount kubeflow.serving_pvc.
SERVING_DIR_STEPS = (ServedModel, ServedStatistics, EvaluationReport, Pusher)
# Argo doubles the Trainer's retry backoff each time, up to an hour (KFP's own cap).
RETRY_BACKOFF_FACTOR = 2
RETRY_BACKOFF_MAX_SECONDS = 3600
# Schemes TensorFlow's file systems write, and so TFX's executors.
WRITABLE_SCHEMES = ("gs://", "s3://")

# Kubernetes quantity suffixes, converted to the GB (10^9 bytes) that
# ResourceSpec's memory fields hold, as kfp's own PipelineTask.set_memory_limit does.
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


def resource_spec(resources: config_lib.Resources, where: str) -> ResourceSpec:
    spec = ResourceSpec(
        cpu_request=_cpu(resources.cpu_request, f"{where}.cpu_request"),
        cpu_limit=_cpu(resources.cpu_limit, f"{where}.cpu_limit"),
        memory_request=_memory_gb(resources.memory_request, f"{where}.memory_request"),
        memory_limit=_memory_gb(resources.memory_limit, f"{where}.memory_limit"))
    if spec.cpu_request > spec.cpu_limit or spec.memory_request > spec.memory_limit:
        raise config_lib.ConfigError(f"{where}: a request above its limit ({resources})")
    return spec


def resource_specs(kubeflow: config_lib.KubeflowConfig) -> Dict[str, ResourceSpec]:
    """ResourceSpecs by role: "beam", "light" and "trainer" (with its accelerator)."""
    specs = {role: resource_spec(getattr(kubeflow, f"{role}_resources"), f"kubeflow.{role}_resources")
             for role in ("beam", "light", "trainer")}
    if kubeflow.trainer_accelerator_count < 0:
        raise config_lib.ConfigError("kubeflow.trainer_accelerator_count: must be 0 (CPU) or more")
    if kubeflow.trainer_accelerator_count:
        if not kubeflow.trainer_accelerator_type:
            raise config_lib.ConfigError("kubeflow.trainer_accelerator_type: needed when "
                                         "trainer_accelerator_count is above 0, e.g. 'nvidia.com/gpu'")
        specs["trainer"].accelerator.type = kubeflow.trainer_accelerator_type
        specs["trainer"].accelerator.count = kubeflow.trainer_accelerator_count
    return specs


def retry_policy(kubeflow: config_lib.KubeflowConfig) -> Dict[str, Any]:
    """The Trainer task's retryPolicy, as kfp's PipelineTask.set_retry writes it."""
    if kubeflow.trainer_retries < 0 or kubeflow.trainer_retry_backoff_seconds < 0:
        raise config_lib.ConfigError("kubeflow.trainer_retries and trainer_retry_backoff_seconds: "
                                     "must be 0 or more")
    return {"maxRetryCount": kubeflow.trainer_retries,
            "backoffDuration": f"{kubeflow.trainer_retry_backoff_seconds}s",
            "backoffFactor": float(RETRY_BACKOFF_FACTOR),
            "backoffMaxDuration": f"{RETRY_BACKOFF_MAX_SECONDS}s"}


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
        beam_pipeline_args=list(kubeflow.beam_pipeline_args or config.beam_pipeline_args))


def _local(path: str) -> bool:
    return "://" not in path


def _on_volume(path: str, kubeflow: config_lib.KubeflowConfig) -> bool:
    mount = kubeflow.serving_pvc_mount_path.rstrip("/") + "/"
    return bool(kubeflow.serving_pvc) and path.startswith(mount)


def cluster_warnings(config: config_lib.PipelineConfig) -> List[str]:
    """Locations in the compiled spec that the cluster's pods cannot use, by config key."""
    kubeflow = config.kubeflow
    warnings = []
    paths = {"catalog": config.catalog_path, "trainer.backbone_handle": pipeline.backbone_handle(config)}
    for key, path in paths.items():
        if _local(path) and path not in ("imagenet", "none"):
            warnings.append(f"{key}: {path!r} is a local path; the cluster's pods will not find it "
                            "(use a bucket URL such as gs://...)")
    if _local(config.catalog_path):
        try:
            datasets = catalog_lib.load(config.catalog_path).datasets
        except catalog_lib.CatalogError:
            datasets = []  # ingestion reports a bad catalog; here only its paths matter
        local = [d.name for d in datasets if _local(d.location)]
        if local:
            warnings.append(f"catalog {config.catalog_path}: datasets {', '.join(local)} are in local "
                            "folders; the cluster's pods will not find them")
    if not kubeflow.pipeline_root.startswith(WRITABLE_SCHEMES):
        warnings.append(f"kubeflow.pipeline_root: {kubeflow.pipeline_root!r} is not a gs:// or s3:// URL; "
                        "KFP's launcher and TensorFlow's file systems cannot both use it (run it here with "
                        "`fakeface run-compiled --pipeline-root DIR`)")
    if not (kubeflow.serving_model_dir.startswith(WRITABLE_SCHEMES) or _on_volume(kubeflow.serving_model_dir, kubeflow)):
        warnings.append(f"kubeflow.serving_model_dir: {kubeflow.serving_model_dir!r} is neither a bucket URL "
                        f"nor under kubeflow.serving_pvc_mount_path with kubeflow.serving_pvc set")
    return warnings


_IMPLICIT_INPUT = re.compile(r"inputs\.artifacts\['_([^'.]+)\.([^']+)'\]")


def bind_condition_inputs(pipeline_spec: Dict[str, Any]) -> None:
    """Points each trigger condition at the task's own name for the artifact it reads.

    TFX 1.16 writes a condition on an artifact the task already takes as an
    input (the Pusher's condition on the blessing it is given) under the
    artifact's implicit key, "_Evaluator.blessing", but declares the input
    under its own name, "model_blessing"; KFP's driver then finds no such
    input and fails the task. This renames the reference.
    """
    for task_name, task in pipeline_spec["root"]["dag"]["tasks"].items():
        condition = task.get("triggerPolicy", {}).get("condition")
        if not condition:
            continue
        inputs = task.get("inputs", {}).get("artifacts", {})

        def bound(match: "re.Match") -> str:
            if f"_{match.group(1)}.{match.group(2)}" in inputs:
                return match.group(0)
            for name, source in inputs.items():
                producer = source.get("taskOutputArtifact", {})
                if (producer.get("producerTask"), producer.get("outputArtifactKey")) == match.groups():
                    return f"inputs.artifacts['{name}']"
            raise kfp_platform.PlatformSpecError(
                f"task {task_name}: its condition reads {match.group(0)}, which is not one of its inputs")

        task["triggerPolicy"]["condition"] = _IMPLICIT_INPUT.sub(bound, condition)


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
    retry = retry_policy(kubeflow)
    tfx_pipeline = pipeline.create_pipeline(cluster)

    trainers = [c for c in tfx_pipeline.components if isinstance(c, tfx.components.Trainer)]
    if len(trainers) != 1:
        raise kfp_platform.PlatformSpecError(f"expected one Trainer in the pipeline, found {len(trainers)}")
    trainer_id = trainers[0].id
    resources_by_task = {}
    task_configs: Dict[str, Mapping[str, Any]] = {}
    for component in tfx_pipeline.components:
        role = ("trainer" if component.id == trainer_id
                else "beam" if isinstance(component, BEAM_STEPS) else "light")
        component.with_platform_config(resources[role])
        resources_by_task[component.id] = resources[role]
        if kubeflow.serving_pvc and isinstance(component, SERVING_DIR_STEPS):
            task_configs[component.id] = kfp_platform.kubernetes_executor_config(
                pvc_mounts={kubeflow.serving_pvc: kubeflow.serving_pvc_mount_path})
    task_configs[trainer_id] = kfp_platform.kubernetes_executor_config(
        kubeflow.trainer_node_selector, kubeflow.trainer_tolerations)

    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            # A mapping is per component id; the default key covers the rest.
            default_image={pipeline_builder.DEFAULT_IMAGE_PATH_KEY: kubeflow.image,
                           trainer_id: kubeflow.trainer_image},
            default_commands=kfp_entrypoint.COMMAND,
            use_pipeline_spec_2_1=True))
    pipeline_job = runner.run(tfx_pipeline, write_out=False)
    pipeline_spec = pipeline_job["pipelineSpec"]
    # TFX keeps the root in the Vertex job's runtime config only; open-source
    # KFP takes it from the run (`fakeface schedule` sets it), and this records
    # it in the spec as kfp's own compiler does.
    pipeline_spec["defaultPipelineRoot"] = kubeflow.pipeline_root
    pipeline_spec["root"]["dag"]["tasks"][trainer_id]["retryPolicy"] = retry
    bind_condition_inputs(pipeline_spec)

    for task_name, spec in resources_by_task.items():
        kfp_platform.restore_resources(pipeline_spec, task_name, json_format.MessageToDict(spec))
    platform_spec = kfp_platform.build_platform_spec(pipeline_spec, task_configs)
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
        "warnings": cluster_warnings(cluster),
    }
