"""What a task meets on Kubeflow Pipelines v2, piece by piece: the runner's KFP
semantics on small specs, trigger conditions, the entrypoint's repair of
untyped input artifacts, and the image's environment."""

import json
import os
import shutil
import sys
import textwrap

import pytest

from fakeface.cli import main as fakeface_main
from fakeface.pipeline import compiled_runner, image_env, kfp_condition, kfp_entrypoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_TYPE = {"instanceSchema": "title: tfx.Model\ntype: object\n"}

# A container that records its executor input, writes its output artifacts'
# metadata to the executor output file, and exits as its task is told to.
_TASK = textwrap.dedent("""
    import json, os, sys
    executor_input = json.loads(sys.argv[1])
    name, behaviour = sys.argv[2], sys.argv[3]
    with open(os.path.join(os.environ["RECORD_DIR"], name + ".jsonl"), "a") as f:
        f.write(json.dumps(executor_input) + "\\n")
    if behaviour == "fail":
        print("boom: " + name)
        sys.exit(3)
    marker = os.path.join(os.environ["RECORD_DIR"], name + ".failed-once")
    if behaviour == "fail-once" and not os.path.exists(marker):
        open(marker, "w").close()
        sys.exit(1)
    outputs = {}
    for key, artifacts in executor_input["outputs"]["artifacts"].items():
        uri = artifacts["artifacts"][0]["uri"]
        os.makedirs(uri, exist_ok=True)
        outputs[key] = {"artifacts": [{"uri": uri, "metadata": {"blessed": 1 if behaviour != "unblessed" else 0,
                                                                "n": 3, "flag": True}}]}
    with open(executor_input["outputs"]["outputFile"], "w") as f:
        json.dump({"artifacts": outputs}, f)
""")


def _task(name, behaviour="ok", inputs=None, condition=None, retry=None):
    task = {"taskInfo": {"name": name}, "componentRef": {"name": name},
            "inputs": {"artifacts": {key: {"taskOutputArtifact": {"producerTask": producer,
                                                                  "outputArtifactKey": "out"}}
                                     for key, producer in (inputs or {}).items()}}}
    if condition:
        task["triggerPolicy"] = {"condition": condition}
    if retry:
        task["retryPolicy"] = retry
    component = {"executorLabel": f"{name}_executor",
                 "outputDefinitions": {"artifacts": {"out": {"artifactType": MODEL_TYPE}}}}
    executor = {"container": {"image": "unused", "command": ["python", "-c", _TASK],
                              "args": ["{{$}}", name, behaviour]}}
    return task, component, executor


def _spec(*tasks):
    spec = {"schemaVersion": "2.1.0", "pipelineInfo": {"name": "tiny"}, "components": {},
            "deploymentSpec": {"executors": {}}, "root": {"dag": {"tasks": {}}}}
    for task, component, executor in tasks:
        name = task["taskInfo"]["name"]
        spec["root"]["dag"]["tasks"][name] = task
        spec["components"][name] = component
        spec["deploymentSpec"]["executors"][component["executorLabel"]] = executor
    return spec


@pytest.fixture
def environment(tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    return image_env.ImageEnv(root=sys.prefix, env={
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
        "RECORD_DIR": str(record)})


def _recorded(environment, name):
    with open(os.path.join(environment.env["RECORD_DIR"], name + ".jsonl")) as f:
        return [json.loads(line) for line in f]


def test_inputs_arrive_as_kfp_hands_them_over(tmp_path, environment):
    result = compiled_runner.run(_spec(_task("a"), _task("b", inputs={"model": "a"})),
                                 str(tmp_path / "root"), environment)
    assert [t.state for t in result.tasks] == ["SUCCEEDED", "SUCCEEDED"]
    (seen,) = _recorded(environment, "b")
    artifact = seen["inputs"]["artifacts"]["model"]["artifacts"][0]
    # As the driver reads it back from ML Metadata: no type, the id as name,
    # numbers as doubles and booleans as ints.
    assert artifact["type"] == {"instanceSchema": ""}
    assert artifact["name"] == result.task("a").outputs["out"]["name"]
    assert artifact["metadata"] == {"blessed": 1.0, "n": 3.0, "flag": 1}
    assert artifact["uri"] == result.task("a").outputs["out"]["uri"]
    root, name, run_id, task, salt, key = artifact["uri"].rsplit("/", 5)
    assert (root, name, run_id, task, key) == (str(tmp_path / "root"), "tiny", result.run_id, "a", "out")


def test_a_false_condition_skips_the_task_and_everything_after_it(tmp_path, environment):
    condition = "(inputs.artifacts['model'].artifacts[0].metadata['blessed'] == 1.0)"
    result = compiled_runner.run(_spec(_task("a", "unblessed"), _task("b", inputs={"model": "a"}, condition=condition),
                                       _task("c", inputs={"model": "b"})), str(tmp_path / "root"), environment)
    assert [(t.name, t.state) for t in result.tasks] == [("a", "SUCCEEDED"), ("b", "SKIPPED"), ("c", "SKIPPED")]
    assert compiled_runner.outcome(result)[0] == "Model NOT pushed (skipped: b, c)"


def test_a_retried_task_gets_the_same_executor_input(tmp_path, environment):
    retry = {"maxRetryCount": 2, "backoffDuration": "0s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}
    result = compiled_runner.run(_spec(_task("a", "fail-once", retry=retry)), str(tmp_path / "root"), environment)
    assert result.task("a").attempts == 2
    first, second = _recorded(environment, "a")
    assert first == second  # same output URIs: a retried pod finds what the first one wrote


def test_the_first_task_that_fails_for_good_stops_the_run_with_its_log(tmp_path, environment):
    retry = {"maxRetryCount": 1, "backoffDuration": "0s"}
    with pytest.raises(compiled_runner.TaskFailed) as failed:
        compiled_runner.run(_spec(_task("a", "fail", retry=retry), _task("b", inputs={"model": "a"})),
                            str(tmp_path / "root"), environment)
    assert failed.value.task == "a" and "boom: a" in failed.value.tail
    assert failed.value.tail.count("exit status 3") == 2
    assert not os.path.exists(os.path.join(environment.env["RECORD_DIR"], "b.jsonl"))


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(schemaVersion="2.0.0"), "KFP only supports 2.1.0"),
    (lambda s: s["pipelineInfo"].update(name="my_pipeline"), "must match"),
    (lambda s: s["deploymentSpec"]["executors"].update(
        a_executor={"resolver": {"outputArtifactQueries": {}}}), "neither a container nor an importer"),
])
def test_what_the_kfp_api_server_refuses_is_refused(change, words):
    spec = _spec(_task("a"))
    change(spec)
    with pytest.raises(compiled_runner.SpecError, match=words):
        compiled_runner.check_accepted(spec)


def test_a_dependency_cycle_is_refused():
    spec = _spec(_task("a", inputs={"model": "b"}), _task("b", inputs={"model": "a"}))
    with pytest.raises(compiled_runner.SpecError, match="cycle"):
        compiled_runner.task_order(spec)


def test_argo_backoff_doubles_up_to_the_maximum():
    policy = {"backoffDuration": "10s", "backoffFactor": 2.0, "backoffMaxDuration": "35s"}
    assert [compiled_runner._backoff_seconds(policy, n) for n in (1, 2, 3, 4)] == [10, 20, 35, 35]


# ---------------------------------------------------------------- conditions

def _inputs(**metadata):
    return {"inputs": {"artifacts": {"blessing": {"artifacts": [{"uri": "gs://b/x", "metadata": metadata}]}}}}


@pytest.mark.parametrize("condition, metadata, expected", [
    ("(inputs.artifacts['blessing'].artifacts[0].metadata['blessed'] == 1.0)", {"blessed": 1.0}, True),
    ("(inputs.artifacts['blessing'].artifacts[0].metadata['blessed'] == 1.0)", {"blessed": 0.0}, False),
    ("!((inputs.artifacts['blessing'].artifacts[0].metadata['blessed'] == 1.0))", {"blessed": 0.0}, True),
    ("(inputs.artifacts['blessing'].artifacts[0].metadata['auc'] > 0.5) && "
     "(inputs.artifacts['blessing'].artifacts[0].metadata['auc'] < 0.9)", {"auc": 0.7}, True),
    ("((inputs.artifacts['blessing'].artifacts[0].metadata['name'] == 'a') || "
     "(inputs.artifacts['blessing'].artifacts[0].uri == 'gs://b/x'))", {"name": "b"}, True),
])
def test_conditions_evaluate_as_cel_does(condition, metadata, expected):
    assert kfp_condition.evaluate(condition, _inputs(**metadata)) is expected


@pytest.mark.parametrize("condition, words", [
    ("(inputs.artifacts['blessing'].artifacts[0].metadata['blessed'] == 1.0)", "has no metadata 'blessed'"),
    ("(inputs.artifacts['other'].artifacts[0].metadata['blessed'] == 1.0)", "no input artifact 'other'"),
    ("(inputs.artifacts['blessing'].artifacts[0].metadata['name'] == 1.0)", "no such overload"),
    ("size(inputs.artifacts['blessing'].artifacts) > 0", "unexpected"),
])
def test_conditions_cel_would_fail_on_are_errors(condition, words):
    with pytest.raises(kfp_condition.ConditionError, match=words):
        kfp_condition.evaluate(condition, _inputs(name="a"))


# ---------------------------------------------------------------- entrypoint

def _untyped_executor_input():
    return {"inputs": {"artifacts": {"model": {"artifacts": [
        {"name": "7", "type": {"instanceSchema": ""}, "uri": "/tmp/model", "metadata": {"n": 1.0}}]}}},
        "outputs": {"outputFile": "/tmp/out.json"}}


def test_tfx_cannot_read_the_untyped_inputs_kfp_sends_and_the_entrypoint_repairs_them():
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_utils

    def parse(executor_input):
        message = json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
        return tfx_utils.parse_raw_artifact_dict(message.inputs.artifacts)

    with pytest.raises(AttributeError):  # tensorflow/tfx#7768
        parse(_untyped_executor_input())
    spec = {"artifacts": {"model": {"artifactType": MODEL_TYPE}}}
    argv = ["--json_serialized_invocation_args", json.dumps(_untyped_executor_input()),
            "--json_serialized_inputs_spec_args", json.dumps(spec), "--runner=DirectRunner"]
    repaired = kfp_entrypoint.repaired_argv(argv)
    (model,) = parse(json.loads(repaired[1]))["model"]
    assert type(model).__name__ == "Model" and model.uri == "/tmp/model"
    assert repaired[2:] == argv[2:]


def test_tfx_imports_a_custom_artifact_type_only_after_the_entrypoint_names_its_class():
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_utils

    from fakeface.components.evaluation_report.component import EvaluationReportArtifact

    schema = f"title: {EvaluationReportArtifact.TYPE_NAME}\ntype: object\n"
    executor_input = {"outputs": {"artifacts": {"report": {"artifacts": [
        {"type": {"instanceSchema": schema}, "uri": "/tmp/report"}]}}}}

    def parse(value):
        message = json_format.ParseDict(value, pipeline_spec_pb2.ExecutorInput())
        return tfx_utils.parse_raw_artifact_dict(message.outputs.artifacts)

    with pytest.raises(ImportError, match="fakeface.EvaluationReport"):
        parse(executor_input)
    (report,) = parse(kfp_entrypoint.restore_input_types(executor_input, {}))["report"]
    assert isinstance(report, EvaluationReportArtifact)


def test_the_entrypoint_leaves_typed_inputs_alone():
    typed = _untyped_executor_input()
    typed["inputs"]["artifacts"]["model"]["artifacts"][0]["type"] = {"schemaTitle": "system.Model"}
    spec = {"artifacts": {"model": {"artifactType": MODEL_TYPE}}}
    assert kfp_entrypoint.restore_input_types(typed, spec) == typed


# ---------------------------------------------------------------- the image's environment

def test_the_environment_follows_the_dockerfile():
    dockerfile = os.path.join(REPO, "Dockerfile")
    copies = image_env.dockerfile_copies(dockerfile)
    assert {"setup.py", "fakeface", "pipeline", "components", "serving", "schemas"} <= set(copies)
    assert image_env.dockerfile_env(dockerfile)["TF_USE_LEGACY_KERAS"] == "1"


def test_a_folder_the_dockerfile_does_not_copy_is_missing_from_the_environment(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(REPO, project, ignore=shutil.ignore_patterns(".git", ".venv", "fakeface_runs", "*.egg-info",
                                                                 "__pycache__", "tests", "benchmarks"))
    dockerfile = project / "Dockerfile"
    dockerfile.write_text("\n".join(line for line in dockerfile.read_text().splitlines()
                                    if not line.startswith("COPY schemas")) + "\n")
    with pytest.raises(image_env.ImageEnvError, match="schemas"):
        image_env.build(str(project), str(tmp_path / "envs"))


# ---------------------------------------------------------------- the command

def test_run_compiled_refuses_a_file_that_is_not_a_spec(tmp_path, capsys):
    path = tmp_path / "not-a-spec.yaml"
    path.write_text("just: text\n")
    assert fakeface_main(["run-compiled", str(path)]) == 2
    assert "not a KFP pipeline spec" in capsys.readouterr().err


def test_run_compiled_needs_a_local_pipeline_root(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    spec = _spec(_task("a"))
    spec["defaultPipelineRoot"] = "gs://bucket/root"
    path.write_text(json.dumps(spec))
    assert fakeface_main(["run-compiled", str(path)]) == 2
    assert "--pipeline-root" in capsys.readouterr().err
