"""`fakeface compile` and `fakeface schedule`, offline: no cluster, no registry, no Docker."""

import contextlib
import http.server
import json
import os
import re
import socket
import threading
import time
import types

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from fakeface import cli as fakeface_cli
from fakeface.pipeline import config as config_lib
from fakeface.pipeline import compiled_runner, kfp_entrypoint, kfp_platform, kubeflow_runner, schedule

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"ImageExampleGen", "StatisticsGen", "CuratedSchemaGen", "ExampleValidator", "ServedStatistics",
         "DistributionValidator", "DataValidation", "Transform", "Trainer", "ServedModel", "Evaluator",
         "EvaluationReport", "Pusher"}
BEAM_TASKS = {"ImageExampleGen", "StatisticsGen", "Transform", "Evaluator", "EvaluationReport"}
KUBEFLOW = {
    "image": "registry.example/fakeface:test",
    "trainer_image": "registry.example/fakeface-gpu:test",
    "pipeline_root": "gs://bucket/fakeface/pipelines",
    "serving_model_dir": "gs://bucket/fakeface/serving/fakeface",
    "beam_resources": {"cpu_request": "3", "cpu_limit": "4", "memory_request": "6Gi", "memory_limit": "8Gi"},
    "light_resources": {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "1G", "memory_limit": "2G"},
    "trainer_resources": {"cpu_request": "500m", "cpu_limit": "2", "memory_request": "16G",
                          "memory_limit": "20G"},
    "trainer_retries": 4, "trainer_retry_backoff_seconds": 30,
    "trainer_accelerator_type": "nvidia.com/gpu", "trainer_accelerator_count": 2,
    "trainer_node_selector": {"pool": "gpu", "cloud.google.com/gke-accelerator": "nvidia-l4"},
    "trainer_tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                            {"key": "dedicated", "operator": "Equal", "value": "training",
                             "effect": "NoExecute", "tolerationSeconds": "600"}],
    "beam_pipeline_args": ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081"],
}


def _config_dict():
    return {"catalog": "gs://bucket/catalogs/founding.yaml",
            "trainer": {"backbone_handle": "gs://bucket/hub/small-cnn"},
            "kubeflow": json.loads(json.dumps(KUBEFLOW))}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The pipeline compiled once to .yaml through the CLI handler and once to .json."""
    root = tmp_path_factory.mktemp("kubeflow")
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(_config_dict()))
    yaml_path = str(root / "fakeface.yaml")
    assert fakeface_cli.main(["compile", "--config", str(config_path), yaml_path]) == 0

    config = config_lib.from_dict(_config_dict())
    before = config_lib.to_dict(config)
    json_path = str(root / "fakeface.json")
    result = kubeflow_runner.compile_pipeline(config, json_path)
    with open(yaml_path) as f:
        documents = list(yaml.safe_load_all(f))
    with open(json_path) as f:
        job = json.load(f)
    return types.SimpleNamespace(documents=documents, job=job, result=result, config=config,
                                 config_before=before, yaml_path=yaml_path)


def _executors(spec):
    return {task: spec["deploymentSpec"]["executors"][kfp_platform.executor_label(spec, task)]
            for task in spec["root"]["dag"]["tasks"]}


def test_yaml_is_a_pipeline_spec_then_a_platform_spec(compiled):
    assert len(compiled.documents) == 2
    spec, platform = compiled.documents
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    kfp_platform.validate_platform_spec(platform)
    assert spec["pipelineInfo"]["name"] == "fakeface"


def test_every_component_is_a_task_and_none_is_a_resolver(compiled):
    spec = compiled.documents[0]
    assert set(spec["root"]["dag"]["tasks"]) == TASKS
    # Open-source KFP rejects resolver executors: the baseline is the served model.
    assert all(set(e) == {"container"} for e in spec["deploymentSpec"]["executors"].values())
    baseline = spec["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["artifacts"]["baseline_model"]
    assert baseline["taskOutputArtifact"]["producerTask"] == "ServedModel"


def test_the_spec_is_what_open_source_kfp_accepts(compiled):
    spec = compiled.documents[0]
    compiled_runner.check_accepted(spec)
    assert spec["schemaVersion"] == "2.1.0"
    assert spec["defaultPipelineRoot"] == KUBEFLOW["pipeline_root"]
    assert "constantValue" not in json.dumps(spec)  # the 2.0 encoding KFP's driver does not implement


def test_the_data_validation_gate_runs_before_transform_as_a_container_task(compiled):
    spec = compiled.documents[0]
    tasks = spec["root"]["dag"]["tasks"]
    assert "DataValidation" in tasks["Transform"]["dependentTasks"]
    gate = _executors(spec)["DataValidation"]["container"]
    assert gate["image"] == KUBEFLOW["image"]
    assert "fakeface.components.data_validation.executor.Executor" in " ".join(gate["args"])
    anomalies = tasks["DataValidation"]["inputs"]["artifacts"]
    assert anomalies["schema_anomalies"]["taskOutputArtifact"]["producerTask"] == "ExampleValidator"
    assert anomalies["drift_anomalies"]["taskOutputArtifact"]["producerTask"] == "DistributionValidator"


def test_every_condition_reads_inputs_of_its_own_task(compiled):
    tasks = compiled.documents[0]["root"]["dag"]["tasks"]
    conditions = {name: t["triggerPolicy"]["condition"] for name, t in tasks.items() if "triggerPolicy" in t}
    assert conditions == {"Pusher": "(inputs.artifacts['model_blessing'].artifacts[0].metadata['blessed'] == 1.0)"}
    for name, condition in conditions.items():
        for key in re.findall(r"inputs\.artifacts\['([^']+)'\]", condition):
            assert key in tasks[name]["inputs"]["artifacts"], (name, key)


def test_resources_per_kind_of_step_with_requests_and_limits(compiled):
    def expected(role):
        r = KUBEFLOW[f"{role}_resources"]
        gb = {"6Gi": 6 * 2**30 / 1e9, "8Gi": 8 * 2**30 / 1e9, "1G": 1.0, "2G": 2.0, "16G": 16.0, "20G": 20.0}
        cpu = {"3": 3.0, "4": 4.0, "250m": 0.25, "1": 1.0, "500m": 0.5, "2": 2.0}
        return {"cpuRequest": cpu[r["cpu_request"]], "cpuLimit": cpu[r["cpu_limit"]],
                "memoryRequest": pytest.approx(gb[r["memory_request"]]),
                "memoryLimit": pytest.approx(gb[r["memory_limit"]])}

    for task, executor in _executors(compiled.documents[0]).items():
        resources = executor["container"]["resources"]
        if task == "Trainer":
            assert resources == dict(expected("trainer"), accelerator={"type": "nvidia.com/gpu", "count": "2"})
        else:
            assert resources == expected("beam" if task in BEAM_TASKS else "light"), task


def test_the_default_trainer_fits_an_8_vcpu_30_gb_node_with_one_t4():
    # GKE n1-standard-8 with one T4: about 7.91 CPU and 26.4 GiB allocatable.
    resources = kubeflow_runner.resource_specs(config_lib.KubeflowConfig())["trainer"]
    assert resources.cpu_request <= 7.0 and resources.memory_request <= 24 * 2**30 / 1e9
    assert resources.accelerator.count == 1


def test_the_trainer_is_retried_as_configured(compiled):
    tasks = compiled.documents[0]["root"]["dag"]["tasks"]
    assert tasks["Trainer"]["retryPolicy"] == {"maxRetryCount": 4, "backoffDuration": "30s",
                                               "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}
    assert all("retryPolicy" not in t for name, t in tasks.items() if name != "Trainer")
    json_format.ParseDict(tasks["Trainer"], pipeline_spec_pb2.PipelineTaskSpec())


def test_the_schema_travels_by_content_not_by_path(compiled):
    from fakeface.components.curated_schema import executor as schema_executor

    parameters = compiled.documents[0]["root"]["dag"]["tasks"]["CuratedSchemaGen"]["inputs"]["parameters"]
    assert parameters == {"schema_sha256": {"runtimeValue": {"constant": schema_executor.schema_sha256()}}}
    assert "schema.pbtxt" not in json.dumps(compiled.documents[0])


def test_the_serving_volume_is_mounted_where_the_serving_folder_is_read_and_written(tmp_path):
    config = config_lib.from_dict({"kubeflow": {"serving_pvc": "fakeface-models",
                                                "serving_model_dir": "/models/fakeface"}})
    path = str(tmp_path / "kind.yaml")
    result = kubeflow_runner.compile_pipeline(config, path)
    with open(path) as f:
        spec, platform = yaml.safe_load_all(f)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounts = {task: executors[kfp_platform.executor_label(spec, task)].get("pvcMount")
              for task in spec["root"]["dag"]["tasks"] if kfp_platform.executor_label(spec, task) in executors}
    volume = [{"constant": "fakeface-models", "mountPath": "/models"}]
    assert mounts == {"ServedModel": volume, "ServedStatistics": volume, "EvaluationReport": volume,
                      "Pusher": volume, "Trainer": None}
    kfp_platform.validate_platform_spec(platform)
    assert not any("serving_model_dir" in w for w in result["warnings"])


def test_compile_names_the_key_of_every_location_a_pod_cannot_use(tmp_path):
    from fakeface import sample_data

    catalog = sample_data.generate(str(tmp_path / "data"), per_source=2, size=16)
    config = config_lib.from_dict({"runs_root": str(tmp_path / "runs"), "catalog": catalog,
                                   "kubeflow": {"pipeline_root": "minio://mlpipeline/v2",
                                                "serving_model_dir": "/srv/models"}})
    warnings = kubeflow_runner.cluster_warnings(kubeflow_runner.cluster_config(config))
    keys = sorted(w.split(":")[0].split(" ")[0] for w in warnings)
    assert keys == ["catalog", "catalog", "kubeflow.pipeline_root", "kubeflow.serving_model_dir",
                    "trainer.backbone_handle"]


def test_only_the_trainer_has_a_node_selector_and_tolerations(compiled):
    spec, platform = compiled.documents
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    trainer_component = spec["root"]["dag"]["tasks"]["Trainer"]["componentRef"]["name"]
    assert list(executors) == [spec["components"][trainer_component]["executorLabel"]]
    config = next(iter(executors.values()))
    assert config["nodeSelector"] == {"labels": KUBEFLOW["trainer_node_selector"]}
    assert config["tolerations"] == KUBEFLOW["trainer_tolerations"]


def test_images_per_component(compiled):
    for task, executor in _executors(compiled.documents[0]).items():
        expected = KUBEFLOW["trainer_image"] if task == "Trainer" else KUBEFLOW["image"]
        assert executor["container"]["image"] == expected, task
        assert executor["container"]["command"] == kfp_entrypoint.COMMAND


def test_beam_args_and_locations_come_from_the_kubeflow_section(compiled):
    spec = compiled.documents[0]
    local_args = config_lib.PipelineConfig().beam_pipeline_args
    for task, executor in _executors(spec).items():
        args = executor["container"]["args"]
        assert args[-2:] == KUBEFLOW["beam_pipeline_args"], task
        assert not set(local_args) & set(args), task
    assert compiled.job["runtimeConfig"]["gcsOutputDirectory"] == KUBEFLOW["pipeline_root"]
    pusher = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]
    assert KUBEFLOW["serving_model_dir"] in pusher["push_destination"]["runtimeValue"]["constant"]
    assert compiled.result["warnings"] == []


def test_code_is_referenced_by_import_path(compiled):
    spec = compiled.documents[0]
    tasks = spec["root"]["dag"]["tasks"]
    value = lambda task, name: tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]
    assert value("Transform", "preprocessing_fn") == "fakeface.components.transform.preprocessing.preprocessing_fn"
    assert value("Trainer", "run_fn") == "fakeface.components.trainer.training.run_fn"
    text = json.dumps(spec)
    assert "module_file" not in text and "module_path" not in text and ".whl" not in text


def test_json_is_a_vertex_pipeline_job_without_platform_spec(compiled):
    job = json_format.ParseDict(compiled.job, pipeline_spec_pb2.PipelineJob())
    spec = json_format.ParseDict(compiled.job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.dag.tasks) == TASKS and job.runtime_config.gcs_output_directory
    assert "platform" not in json.dumps(compiled.job).lower()
    assert compiled.result["format"] == "pipeline-job-json" and not compiled.result["platform_spec"]
    assert compiled.job["pipelineSpec"]["deploymentSpec"] == compiled.documents[0]["deploymentSpec"]


def test_compile_leaves_the_callers_config_alone(compiled):
    assert config_lib.to_dict(compiled.config) == compiled.config_before
    assert compiled.config.code_source == "module_file"


def test_platform_spec_is_validated_strictly_against_the_protos():
    kfp_platform.validate_platform_spec({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
        "x": {"nodeSelector": {"labels": {"a": "b"}}}}}}}})
    with pytest.raises(kfp_platform.PlatformSpecError):  # not a KubernetesExecutorConfig field
        kfp_platform.validate_platform_spec({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
            "x": {"nodeSelectors": {"a": "b"}}}}}}})
    with pytest.raises(kfp_platform.PlatformSpecError, match="tolerationSecs"):
        kfp_platform.kubernetes_executor_config({}, [{"key": "k", "operator": "Exists", "tolerationSecs": "5"}])
    with pytest.raises(kfp_platform.PlatformSpecError, match="operator"):
        kfp_platform.kubernetes_executor_config({}, [{"key": "k", "operator": "Maybe"}])
    with pytest.raises(kfp_platform.PlatformSpecError, match="Exists"):
        kfp_platform.kubernetes_executor_config({}, [{"operator": "Equal", "value": "v"}])


def test_executor_label_follows_the_spec_not_the_task_name(compiled):
    spec = json.loads(json.dumps(compiled.documents[0]))
    component = spec["components"]["Trainer"]
    spec["components"]["renamed"] = dict(component, executorLabel="gpu-exec")
    spec["deploymentSpec"]["executors"]["gpu-exec"] = spec["deploymentSpec"]["executors"]["Trainer_executor"]
    spec["root"]["dag"]["tasks"]["Trainer"]["componentRef"]["name"] = "renamed"
    assert kfp_platform.executor_label(spec, "Trainer") == "gpu-exec"
    with pytest.raises(kfp_platform.PlatformSpecError, match="no task 'Nope'"):
        kfp_platform.executor_label(spec, "Nope")


def test_compile_rejects_bad_settings(tmp_path):
    bad = config_lib.from_dict({"kubeflow": {"beam_resources": {"memory_limit": "8 gigs"}}})
    with pytest.raises(config_lib.ConfigError, match="kubeflow.beam_resources.memory_limit"):
        kubeflow_runner.compile_pipeline(bad, str(tmp_path / "p.yaml"))
    above = config_lib.from_dict({"kubeflow": {"light_resources": {"cpu_request": "2", "cpu_limit": "1"}}})
    with pytest.raises(config_lib.ConfigError, match="kubeflow.light_resources: a request above its limit"):
        kubeflow_runner.compile_pipeline(above, str(tmp_path / "p.yaml"))
    with pytest.raises(kfp_platform.PlatformSpecError, match=".yaml"):
        kubeflow_runner.compile_pipeline(config_lib.PipelineConfig(), str(tmp_path / "p.txt"))


# Container images --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_install_the_lock_and_copy_what_exists(name):
    with open(os.path.join(REPO, name)) as f:
        text = f.read()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", base), f"{name}: base image {base} not pinned by an explicit tag"
    assert "pip install --no-deps -r requirements.lock" in text
    assert re.search(r"pip install --no-deps[^\n]* \.", text)
    assert re.search(r"^ENV TF_USE_LEGACY_KERAS=1", text, re.M)
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert os.path.exists(os.path.join(REPO, source)), f"{name}: COPY source {source} missing"
    if name == "Dockerfile":
        assert base == "tensorflow/tfx:1.16.0"
    else:
        assert "pip install --no-deps -r requirements-gpu.lock" in text


def test_dockerignore_keeps_local_state_out():
    with open(os.path.join(REPO, ".dockerignore")) as f:
        ignored = set(f.read().split())
    assert {".venv", "fakeface_runs", ".git", ".pytest_cache"} <= ignored


# Scheduling ---------------------------------------------------------------------------------

class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"multi_user": false}')

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _kfp_stub(status=200):
    """A loopback HTTP server answering every GET (healthz) with `status`."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Healthz)
    server.status = status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class FakeKfpClient:
    """The subset of kfp.Client that schedule uses, keeping recurring runs in memory."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.experiments = {}
        self.runs = {}
        self.fail_with = None

    def _maybe_fail(self):
        if self.fail_with:
            raise self.fail_with

    def create_experiment(self, name, namespace=None):
        self._maybe_fail()
        experiment_id = self.experiments.setdefault(name, f"exp-{len(self.experiments) + 1}")
        return types.SimpleNamespace(experiment_id=experiment_id)

    def get_experiment(self, experiment_name=None, namespace=None):
        self._maybe_fail()
        if experiment_name not in self.experiments:
            raise ValueError(f"No experiment is found with name {experiment_name}.")
        return types.SimpleNamespace(experiment_id=self.experiments[experiment_name])

    def create_recurring_run(self, experiment_id, job_name, cron_expression, pipeline_package_path, **kwargs):
        import inspect

        import kfp

        # The arguments the real client takes, by name.
        inspect.signature(kfp.Client.create_recurring_run).bind(
            self, experiment_id, job_name, cron_expression=cron_expression,
            pipeline_package_path=pipeline_package_path, **kwargs)
        self._maybe_fail()
        with open(pipeline_package_path) as f:
            assert len(list(yaml.safe_load_all(f))) == 2  # spec and platform spec
        run_id = f"rr-{len(self.runs) + 1}"
        self.runs[run_id] = types.SimpleNamespace(
            recurring_run_id=run_id, display_name=job_name, experiment_id=experiment_id, status="ENABLED",
            trigger=types.SimpleNamespace(cron_schedule=types.SimpleNamespace(cron=cron_expression)),
            kwargs=kwargs)
        return self.runs[run_id]

    def list_recurring_runs(self, page_token="", page_size=10, experiment_id=None, filter=None, **kwargs):
        self._maybe_fail()
        # One run per page, to exercise paging.
        runs = [r for r in self.runs.values() if r.experiment_id == experiment_id]
        start = int(page_token or 0)
        page = runs[start:start + 1]
        next_token = str(start + 1) if start + 1 < len(runs) else ""
        return types.SimpleNamespace(recurring_runs=page, next_page_token=next_token)

    def delete_recurring_run(self, recurring_run_id):
        self._maybe_fail()
        del self.runs[recurring_run_id]


@pytest.fixture
def cli():
    fake = FakeKfpClient()
    parser = fakeface_cli.build_parser(client_factory=lambda **kwargs: fake)

    def run(*argv):
        return fakeface_cli.dispatch(parser.parse_args(list(argv)))

    run.fake = fake
    return run


def test_schedule_create_replaces_and_is_idempotent(cli, compiled, capsys):
    with _kfp_stub() as endpoint:
        create = ["schedule", "create", "--endpoint", endpoint, "--spec", compiled.yaml_path]
        assert cli(*create, "--name", "other") == 0
        assert cli(*create) == 0
        assert cli(*create, "--cron", "0 30 2 * * *") == 0
        runs = cli.fake.runs.values()
        assert sorted(r.display_name for r in runs) == ["fakeface-retrain", "other"]
        mine = next(r for r in runs if r.display_name == "fakeface-retrain")
        assert mine.trigger.cron_schedule.cron == "0 30 2 * * *"
        assert mine.kwargs["enable_caching"] is False and mine.kwargs["max_concurrency"] == 1
        # Open-source KFP takes the root from the run, not the spec.
        assert mine.kwargs["pipeline_root"] == config_lib.KubeflowConfig().pipeline_root
        assert mine.kwargs["service_account"] == "fakeface-pipeline-runner"
        assert "replaced rr-2" in capsys.readouterr().out

        assert cli("schedule", "list", "--endpoint", endpoint) == 0
        listed = capsys.readouterr().out
        assert "fakeface-retrain" in listed and "other" in listed and "0 30 2 * * *" in listed

        assert cli("schedule", "delete", "--endpoint", endpoint) == 0
        assert [r.display_name for r in cli.fake.runs.values()] == ["other"]
        assert cli("schedule", "delete", "--endpoint", endpoint) == 0
        assert "Deleted 0" in capsys.readouterr().out


def test_schedule_create_checks_its_inputs(cli, compiled, tmp_path, capsys):
    with _kfp_stub() as endpoint:
        assert cli("schedule", "create", "--endpoint", endpoint, "--spec", compiled.yaml_path,
                   "--cron", "0 3 * * 1") == 1
        assert "six fields" in capsys.readouterr().err
        assert cli("schedule", "create", "--endpoint", endpoint, "--spec", str(tmp_path / "x.json")) == 1
        assert ".yaml" in capsys.readouterr().err
    assert not cli.fake.runs


@pytest.mark.parametrize("status, error, words", [
    (401, schedule.AuthenticationFailed, "refused the credentials"),
    (403, schedule.AuthenticationFailed, "refused the credentials"),
    (302, schedule.AuthenticationFailed, "login page"),
    (404, schedule.KfpApiError, "Kubeflow Pipelines API"),
])
def test_endpoint_check_names_auth_and_api_failures(status, error, words):
    with _kfp_stub(status) as endpoint:
        with pytest.raises(error, match=words) as raised:
            schedule.check_endpoint(endpoint, timeout=5)
    assert endpoint in str(raised.value)


def test_api_errors_during_calls_are_translated(cli, compiled, capsys):
    import kfp_server_api

    with _kfp_stub() as endpoint:
        cli.fake.fail_with = kfp_server_api.ApiException(status=403, reason="Forbidden")
        assert cli("schedule", "list", "--endpoint", endpoint) == 1
        err = capsys.readouterr().err
        assert "refused the credentials" in err and endpoint in err and schedule.TOKEN_ENV in err
        cli.fake.fail_with = kfp_server_api.ApiException(status=500, reason="Internal Server Error")
        assert cli("schedule", "create", "--endpoint", endpoint, "--spec", compiled.yaml_path) == 1
        assert "HTTP 500" in capsys.readouterr().err


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_kfp_client_at_a_closed_port_is_unreachable(capsys):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(schedule.EndpointUnreachable, match="cannot reach") as raised:
        schedule.connect(endpoint, timeout=2)
    assert endpoint in str(raised.value) and "port-forward" in str(raised.value)
    # The same through kfp.Client itself, past the pre-check: its healthz call fails.
    import kfp

    with pytest.raises(schedule.EndpointUnreachable, match="cannot reach"):
        with schedule._api(endpoint, "connect"):
            kfp.Client(host=endpoint)
    assert time.monotonic() - started < 30


def test_schedule_cli_reports_an_unreachable_endpoint(capsys):
    assert fakeface_cli.main(["schedule", "list", "--endpoint", f"http://127.0.0.1:{_closed_port()}",
                              "--timeout", "2"]) == 1
    assert "cannot reach the Kubeflow Pipelines API" in capsys.readouterr().err
