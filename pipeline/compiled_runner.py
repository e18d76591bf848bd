"""Runs a compiled Kubeflow Pipelines v2 spec on this machine, task by task.

Not an orchestrator for users: the pre-flight proof that the YAML `fakeface
compile` writes is the one a cluster can execute, and a check to run before
uploading it. It does what open-source KFP v2's API server, driver and
launcher (backend 2.4.1 and later) do with a spec, and nothing else:

* refuses what the API server refuses: a schema version other than 2.1.0, a
  pipeline name outside [a-z0-9-], executors other than containers and
  importers (KFP has no resolver executor);
* takes the tasks of the root DAG in dependency order; each one gets the
  executor input the driver builds: its parameters, its input artifacts as
  the driver reads them back from ML Metadata (URI, metadata with numbers as
  doubles, an empty type, the MLMD id as name), and output artifacts at
  {pipeline root}/{pipeline name}/{run id}/{task}/{random id}/{output key};
* skips a task whose trigger condition is false, and every task after it;
* runs the container's command and args, placeholders resolved by kfp's own
  kfp.local.placeholder_utils, as a subprocess in an environment where the
  project is installed as the image installs it (pipeline/image_env.py);
* takes the output artifacts' URIs and metadata from the executor output file
  and hands them to the tasks that consume them;
* retries a failed task as the task's retry policy says, with the same
  executor input (Argo retries the launcher's pod, not the driver);
* stops at the first task that fails for good, with its log.

What it does not do: caching, container resources, node selectors and
tolerations, images (every task runs in the one local environment), and
object stores: the pipeline root is a local folder, which TFX reaches
through tf.io.gfile exactly as it reaches gs://.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional

import yaml

from fakeface.components.evaluation_report import executor as report_executor
from fakeface.pipeline import image_env, kfp_condition

# What KFP's API server accepts (backend/src/apiserver/template/v2_template.go, common/utils.go).
SCHEMA_VERSION = "2.1.0"
PIPELINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_LOG_TAIL_LINES = 40


class SpecError(ValueError):
    """A spec KFP would refuse, or one this runner cannot read; names the task."""


class TaskFailed(RuntimeError):
    """A task failed on every attempt its retry policy allows."""

    def __init__(self, task: str, log_path: str, tail: str):
        super().__init__(f"task {task} failed; its log: {log_path}\n{tail}")
        self.task, self.log_path, self.tail = task, log_path, tail


@dataclasses.dataclass
class TaskRun:
    name: str
    state: str  # SUCCEEDED, SKIPPED (condition false or an upstream task skipped) or FAILED
    attempts: int = 0
    seconds: float = 0.0
    log_path: str = ""
    # Output key -> the artifact as KFP records it: {"name", "uri", "metadata"}.
    outputs: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PipelineRun:
    pipeline_name: str
    run_id: str
    pipeline_root: str
    tasks: List[TaskRun]

    def task(self, name: str) -> TaskRun:
        return next(t for t in self.tasks if t.name == name)


# Called with (task name, attempt, process) as each container starts; tests use it to kill one.
StartHook = Callable[[str, int, subprocess.Popen], None]


def load(path: str) -> Dict[str, Any]:
    """The PipelineSpec of a compiled YAML (its first document; the second is the platform spec)."""
    try:
        with open(path, encoding="utf-8") as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"{path}: cannot read a compiled pipeline: {e}") from e
    if not documents or not isinstance(documents[0], dict) or "root" not in documents[0]:
        raise SpecError(f"{path}: not a KFP pipeline spec (a .yaml written by `fakeface compile`)")
    return documents[0]


def check_accepted(spec: Mapping[str, Any]) -> None:
    """Raises SpecError for what KFP's API server would refuse on upload."""
    if spec.get("schemaVersion") != SCHEMA_VERSION:
        raise SpecError(f"schemaVersion {spec.get('schemaVersion')!r}: KFP only supports {SCHEMA_VERSION}")
    name = spec.get("pipelineInfo", {}).get("name", "")
    if not PIPELINE_NAME.fullmatch(name):
        raise SpecError(f"pipeline name {name!r} must match {PIPELINE_NAME.pattern}")
    for task_name in spec["root"]["dag"]["tasks"]:
        executor = _executor(spec, task_name)
        if not ({"container", "importer"} & set(executor)):
            raise SpecError(f"task {task_name}: executor {sorted(executor)} is neither a container nor an "
                            "importer; open-source KFP implements no other executor")


def _component(spec: Mapping[str, Any], task_name: str) -> Mapping[str, Any]:
    name = spec["root"]["dag"]["tasks"][task_name]["componentRef"]["name"]
    return spec["components"][name]


def _executor(spec: Mapping[str, Any], task_name: str) -> Mapping[str, Any]:
    return spec["deploymentSpec"]["executors"][_component(spec, task_name)["executorLabel"]]


def _upstream(task: Mapping[str, Any]) -> List[str]:
    producers = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    for spec in list(inputs.get("artifacts", {}).values()) + list(inputs.get("parameters", {}).values()):
        for key in ("taskOutputArtifact", "taskOutputParameter"):
            if key in spec:
                producers.add(spec[key]["producerTask"])
    return sorted(producers)


def task_order(spec: Mapping[str, Any]) -> List[str]:
    """The root DAG's tasks, each after every task it depends on; ties by name."""
    tasks = spec["root"]["dag"]["tasks"]
    upstream = {name: _upstream(task) for name, task in tasks.items()}
    for name, producers in upstream.items():
        unknown = [p for p in producers if p not in tasks]
        if unknown:
            raise SpecError(f"task {name} depends on {unknown}, which the DAG does not have")
    order: List[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and all(p in order for p in upstream[n]))
        if not ready:
            raise SpecError(f"the tasks {sorted(set(tasks) - set(order))} depend on each other in a cycle")
        order.append(ready[0])
    return order


def _parameter(task_name: str, key: str, spec: Mapping[str, Any]) -> Any:
    runtime = spec.get("runtimeValue", {})
    if "constant" in runtime:
        return runtime["constant"]
    if "constantValue" in runtime:
        raise SpecError(f"task {task_name}: parameter {key!r} uses the pipeline spec 2.0 encoding "
                        "(runtimeValue.constantValue), which KFP's driver does not implement")
    raise SpecError(f"task {task_name}: parameter {key!r} is neither a constant nor anything this "
                    f"runner resolves: {sorted(spec)}")


def _mlmd_round_trip(metadata: Mapping[str, Any]) -> Dict[str, Any]:
    """Metadata as ML Metadata gives it back: numbers become doubles, booleans ints."""
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)):
            return float(value)
        return value

    return {key: convert(value) for key, value in metadata.items()}


@dataclasses.dataclass
class _Run:
    spec: Mapping[str, Any]
    pipeline_root: str
    run_id: str
    environment: image_env.ImageEnv
    log_dir: str
    # The pods' local disks: executor output files and home folders.
    scratch_dir: str
    on_start: Optional[StartHook]
    finished: Dict[str, TaskRun] = dataclasses.field(default_factory=dict)
    next_artifact_id: int = 1

    @property
    def pipeline_name(self) -> str:
        return self.spec["pipelineInfo"]["name"]

    def executor_input(self, task_name: str, local_dir: str) -> Dict[str, Any]:
        task = self.spec["root"]["dag"]["tasks"][task_name]
        component = _component(self.spec, task_name)
        inputs: Dict[str, Any] = {"parameterValues": {}, "artifacts": {}}
        for key, parameter in task.get("inputs", {}).get("parameters", {}).items():
            inputs["parameterValues"][key] = _parameter(task_name, key, parameter)
        for key, artifact in task.get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" not in artifact:
                raise SpecError(f"task {task_name}: input artifact {key!r} is not another task's output")
            producer = artifact["taskOutputArtifact"]["producerTask"]
            output_key = artifact["taskOutputArtifact"]["outputArtifactKey"]
            produced = self.finished[producer].outputs.get(output_key)
            if produced is None:
                raise SpecError(f"task {task_name}: task {producer} has no output {output_key!r}")
            inputs["artifacts"][key] = {"artifacts": [{
                "name": produced["name"], "type": {"instanceSchema": ""}, "uri": produced["uri"],
                "metadata": copy.deepcopy(produced["metadata"])}]}
        salt = str(uuid.uuid4())
        outputs: Dict[str, Any] = {"artifacts": {}, "parameters": {},
                                   "outputFile": os.path.join(local_dir, "output_metadata.json")}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            uri = "/".join([self.pipeline_root.rstrip("/"), self.pipeline_name, self.run_id, task_name, salt, key])
            outputs["artifacts"][key] = {"artifacts": [
                {"type": definition["artifactType"], "uri": uri, "metadata": {}}]}
        for key in component.get("outputDefinitions", {}).get("parameters", {}):
            outputs["parameters"][key] = {"outputFile": os.path.join(local_dir, "parameters", key)}
        return {"inputs": inputs, "outputs": outputs}

    def record_outputs(self, task_name: str, executor_input: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
        """The task's output artifacts merged with what its executor output reports, as MLMD keeps them."""
        reported: Dict[str, Any] = {}
        path = executor_input["outputs"]["outputFile"]
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                reported = json.load(f).get("artifacts", {})
        outputs = {}
        for key, artifact_list in executor_input["outputs"]["artifacts"].items():
            artifact = dict(artifact_list["artifacts"][0])
            update = (reported.get(key, {}).get("artifacts") or [{}])[0]
            artifact["uri"] = update.get("uri") or artifact["uri"]
            artifact["metadata"] = _mlmd_round_trip({**artifact["metadata"], **update.get("metadata", {})})
            artifact["name"] = str(self.next_artifact_id)
            self.next_artifact_id += 1
            outputs[key] = artifact
        return outputs

    def run_task(self, task_name: str) -> TaskRun:
        task = self.spec["root"]["dag"]["tasks"][task_name]
        skipped_upstream = [p for p in _upstream(task) if self.finished[p].state == "SKIPPED"]
        if skipped_upstream:
            return TaskRun(task_name, "SKIPPED")
        local_dir = tempfile.mkdtemp(prefix=f"{task_name}-", dir=self.scratch_dir)
        executor_input = self.executor_input(task_name, local_dir)
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition:
            try:
                if not kfp_condition.evaluate(condition, executor_input):
                    return TaskRun(task_name, "SKIPPED")
            except kfp_condition.ConditionError as e:
                raise SpecError(f"task {task_name}: {e}") from e
        executor = _executor(self.spec, task_name)
        if "importer" in executor:
            return self._import(task_name, executor["importer"], executor_input)
        return self._run_container(task_name, task, executor["container"], executor_input, local_dir)

    def _import(self, task_name: str, importer: Mapping[str, Any],
                executor_input: Mapping[str, Any]) -> TaskRun:
        uri = importer.get("artifactUri", {}).get("constant")
        if not uri:
            raise SpecError(f"task {task_name}: the importer's artifactUri has no constant; "
                            "KFP fails it with 'artifact uri not provided'")
        key = next(iter(executor_input["outputs"]["artifacts"]), "artifact")
        artifact = {"name": str(self.next_artifact_id), "uri": uri,
                    "metadata": _mlmd_round_trip(importer.get("metadata", {}))}
        self.next_artifact_id += 1
        return TaskRun(task_name, "SUCCEEDED", outputs={key: artifact})

    def _run_container(self, task_name: str, task: Mapping[str, Any], container: Mapping[str, Any],
                       executor_input: Dict[str, Any], local_dir: str) -> TaskRun:
        from kfp.local import placeholder_utils

        command = placeholder_utils.replace_placeholders(
            list(container.get("command", [])) + list(container.get("args", [])), executor_input,
            pipeline_resource_name=f"{self.pipeline_name}-{self.run_id}", task_resource_name=task_name,
            pipeline_root=self.pipeline_root)
        policy = task.get("retryPolicy", {})
        attempts_allowed = 1 + int(policy.get("maxRetryCount", 0))
        log_path = os.path.join(self.log_dir, f"{task_name}.log")
        started = time.monotonic()
        for attempt in range(1, attempts_allowed + 1):
            if attempt > 1:
                time.sleep(_backoff_seconds(policy, attempt - 1))
            # A retried pod starts with a fresh local disk; the remote URIs keep what it wrote.
            if os.path.exists(executor_input["outputs"]["outputFile"]):
                os.remove(executor_input["outputs"]["outputFile"])
            if self._attempt(task_name, attempt, command, container, log_path) == 0:
                return TaskRun(task_name, "SUCCEEDED", attempts=attempt, seconds=time.monotonic() - started,
                               log_path=log_path, outputs=self.record_outputs(task_name, executor_input))
        raise TaskFailed(task_name, log_path, _tail(log_path))

    def _attempt(self, task_name: str, attempt: int, command: List[str], container: Mapping[str, Any],
                 log_path: str) -> int:
        env = dict(self.environment.env)
        env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
        workdir = tempfile.mkdtemp(prefix=f"{task_name}-{attempt}-home-", dir=self.scratch_dir)
        env["HOME"] = workdir
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"=== {task_name}, attempt {attempt}: {' '.join(command)[:500]}\n")
            log.flush()
            process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
            if self.on_start:
                self.on_start(task_name, attempt, process)
            code = process.wait()
            log.write(f"=== {task_name}, attempt {attempt}: exit status {code}\n")
        return code


def _duration_seconds(value: Any) -> float:
    if not value:
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value))
    if not match:
        raise SpecError(f"retry policy duration {value!r} is not in seconds, such as '30s'")
    return float(match.group(1))


def _backoff_seconds(policy: Mapping[str, Any], retry: int) -> float:
    """Argo's backoff before the retry-th retry: duration * factor^(retry - 1), at most the maximum."""
    delay = _duration_seconds(policy.get("backoffDuration")) * float(policy.get("backoffFactor") or 1) ** (retry - 1)
    maximum = _duration_seconds(policy.get("backoffMaxDuration"))
    return min(delay, maximum) if maximum else delay


def _tail(path: str, lines: int = _LOG_TAIL_LINES) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def run(spec: Mapping[str, Any], pipeline_root: str, environment: image_env.ImageEnv,
        on_start: Optional[StartHook] = None,
        on_task_done: Optional[Callable[[TaskRun], None]] = None) -> PipelineRun:
    """Runs every task of `spec` under `pipeline_root`; raises TaskFailed at the first failure."""
    check_accepted(spec)
    order = task_order(spec)
    run_id = str(uuid.uuid4())
    log_dir = os.path.join(pipeline_root, spec["pipelineInfo"]["name"], run_id, "logs")
    os.makedirs(log_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fakeface-run-compiled-") as scratch_dir:
        state = _Run(spec=spec, pipeline_root=os.path.abspath(pipeline_root), run_id=run_id,
                     environment=environment, log_dir=log_dir, scratch_dir=scratch_dir, on_start=on_start)
        for task_name in order:
            result = state.run_task(task_name)
            state.finished[task_name] = result
            if on_task_done:
                on_task_done(result)
    return PipelineRun(state.pipeline_name, run_id, state.pipeline_root, [state.finished[n] for n in order])


def outcome(result: PipelineRun) -> List[str]:
    """What the run decided, from the artifacts' metadata: pushed where, or why not."""
    lines = []
    for task in result.tasks:
        for artifact in task.outputs.values():
            metadata = artifact["metadata"]
            if metadata.get("pushed"):
                lines.append(f"Model pushed to {metadata.get('pushed_destination')}")
            reasons = metadata.get(report_executor.NOT_BLESSED_BECAUSE_PROPERTY, "")
            for reason in filter(None, str(reasons).split("\n")):
                lines.append(f"  not blessed: {reason}")
    if not any(line.startswith("Model pushed") for line in lines):
        skipped = [t.name for t in result.tasks if t.state == "SKIPPED"]
        lines.insert(0, "Model NOT pushed" + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    return lines
