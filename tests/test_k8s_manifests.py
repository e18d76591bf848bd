"""Offline checks of the Kubernetes manifests (k8s/) and TF Serving config (serving/).

Every kustomization (k8s/base and each directory under k8s/overlays/) is built
with `kubectl kustomize`, validated against the Kubernetes OpenAPI schema of a
pinned Kubernetes version, and checked for the properties the serving setup
relies on: Pod Security "restricted" settings, probes, matching selectors, a
NetworkPolicy that admits only labelled clients, and TF Serving config files
that parse and agree with the Deployment.
"""

import functools
import pathlib
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

REPO = pathlib.Path(__file__).resolve().parent.parent
SERVING_DIR = REPO / "serving"
K8S_DIR = REPO / "k8s"
OVERLAYS_DIR = K8S_DIR / "overlays"

# Oldest Kubernetes minor the manifests must be accepted by.
KUBERNETES_VERSION = "1.30.0"

MODEL_NAME = "fakeface"
NAMESPACE = "fakeface"
SERVING_DEPLOYMENT = "fakeface-serving"
SERVING_CONTAINER = "tensorflow-serving"
SERVING_CONFIGMAP = "fakeface-serving-config"
CONFIG_MOUNT = "/config"
GRPC_PORT = 8500
HTTP_PORT = 8501
CLIENT_LABEL = {"fakeface.io/serving-client": "true"}
MONITORING_NAMESPACE_LABEL = {"kubernetes.io/metadata.name": "monitoring"}
SERVING_CONFIG_FILES = ("models.config", "batching_parameters.pbtxt", "monitoring.config")

OVERLAYS = sorted(p for p in OVERLAYS_DIR.iterdir() if p.is_dir()) if OVERLAYS_DIR.is_dir() else []
KUSTOMIZATIONS = [K8S_DIR / "base", *OVERLAYS]
KUSTOMIZATION_IDS = [str(p.relative_to(K8S_DIR)) for p in KUSTOMIZATIONS]

# --- TF Serving config protos ------------------------------------------------
#
# The tensorflow-serving-api wheel ships ModelServerConfig but not
# BatchingParameters (tensorflow_serving/servables/tensorflow/
# session_bundle_config.proto) nor MonitoringConfig
# (tensorflow_serving/config/monitoring_config.proto). Their text-format schema
# as of TF Serving 2.16.1 (field names, types, nesting) is declared here, so
# parsing rejects the unknown fields and mistyped values TF Serving refuses at
# startup. A field of BatchingParameters missing below makes the test fail, so
# it can only be too strict, never too lenient.

_F = descriptor_pb2.FieldDescriptorProto


def _field(message, name, number, field_type, type_name=None, repeated=False):
    field = message.field.add(
        name=name,
        number=number,
        type=field_type,
        label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
    )
    if type_name:
        field.type_name = type_name


@functools.lru_cache(maxsize=None)
def _tf_serving_config_classes():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="fakeface_tests/tf_serving_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    batching = file_proto.message_type.add(name="BatchingParameters")
    int64_value = ".google.protobuf.Int64Value"
    _field(batching, "max_batch_size", 1, _F.TYPE_MESSAGE, int64_value)
    _field(batching, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64_value)
    _field(batching, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64_value)
    _field(batching, "num_batch_threads", 4, _F.TYPE_MESSAGE, int64_value)
    _field(batching, "thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    _field(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    _field(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    _field(batching, "enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, ".google.protobuf.BoolValue")
    _field(batching, "max_execution_batch_size", 9, _F.TYPE_MESSAGE, int64_value)

    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _F.TYPE_BOOL)
    _field(prometheus, "path", 2, _F.TYPE_STRING)
    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    _field(monitoring, "prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(wrappers_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(file_proto)
    factory = message_factory.MessageFactory(pool)
    return {
        name: factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    }


def parse_models_config(text):
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def parse_batching_parameters(text):
    return text_format.Parse(text, _tf_serving_config_classes()["BatchingParameters"]())


def parse_monitoring_config(text):
    return text_format.Parse(text, _tf_serving_config_classes()["MonitoringConfig"]())


PARSERS = {
    "models.config": parse_models_config,
    "batching_parameters.pbtxt": parse_batching_parameters,
    "monitoring.config": parse_monitoring_config,
}


# --- Building and looking up objects ---------------------------------------


@functools.lru_cache(maxsize=None)
def _build_text(kustomization):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH; the manifests are built with `kubectl kustomize`")
    result = subprocess.run(
        ["kubectl", "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return result.stdout


def build(kustomization):
    """Fresh objects on every call, so a test can never alter another's input."""
    return [doc for doc in yaml.safe_load_all(_build_text(kustomization)) if doc]


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def names(objects, kind):
    return {o["metadata"]["name"] for o in objects if o["kind"] == kind}


def serving_deployment(objects):
    return find(objects, "Deployment", SERVING_DEPLOYMENT)


def serving_container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == SERVING_CONTAINER)


def serving_configmap(objects):
    configmaps = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(SERVING_CONFIGMAP + "-")
    ]
    assert len(configmaps) == 1, f"expected one generated {SERVING_CONFIGMAP}-<hash> ConfigMap"
    return configmaps[0]


def container_args(container):
    """--flag=value arguments as a dict."""
    args = {}
    for arg in container.get("args", []):
        flag, _, value = arg.partition("=")
        args[flag] = value
    return args


def selects(match_labels, labels):
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def overlay_config_overrides(kustomization):
    """Files an overlay substitutes into the serving ConfigMap, by key."""
    spec = yaml.safe_load((kustomization / "kustomization.yaml").read_text())
    overrides = {}
    for generator in spec.get("configMapGenerator", []):
        if generator["name"] != SERVING_CONFIGMAP:
            continue
        assert generator.get("behavior") == "merge", (
            f"{kustomization}: {SERVING_CONFIGMAP} must be merged into, not recreated"
        )
        for entry in generator.get("files", []):
            key, _, path = entry.partition("=")
            overrides[key] = kustomization / (path or key)
    return overrides


def expected_serving_files(kustomization):
    files = {name: SERVING_DIR / name for name in SERVING_CONFIG_FILES}
    files.update(overlay_config_overrides(kustomization))
    return files


# --- Layout and build --------------------------------------------------------


def test_overlays_are_discovered():
    assert {p.name for p in OVERLAYS} >= {"kind", "gke"}
    for overlay in OVERLAYS:
        assert (overlay / "kustomization.yaml").is_file(), f"{overlay} has no kustomization.yaml"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_kustomization_builds_into_the_fakeface_namespace(kustomization):
    objects = build(kustomization)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
            "ConfigMap", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    assert "Namespace" not in kinds, "the namespace is provisioned outside these manifests"
    for obj in objects:
        assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_objects_validate_against_kubernetes_schema(kustomization):
    errors = []
    for obj in build(kustomization):
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{label}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{label}: {exc.message}")
    assert not errors, "\n".join(errors)


# --- Serving Deployment ------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_serving_pod_meets_restricted_pod_security(kustomization):
    deployment = serving_deployment(build(kustomization))
    pod = deployment["spec"]["template"]["spec"]
    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] > 0
    assert pod_security["runAsGroup"] > 0
    assert pod_security["fsGroup"] > 0
    assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in pod["containers"] + pod.get("initContainers", []):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        assert not security.get("capabilities", {}).get("add"), container["name"]
        assert not security.get("privileged"), container["name"]
        assert security.get("runAsUser", pod_security["runAsUser"]) > 0, container["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert not any("hostPath" in v for v in volumes.values())
    tmp_mounts = [m for m in serving_container(deployment)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp_mounts) == 1 and "emptyDir" in volumes[tmp_mounts[0]["name"]], (
        "a read-only root filesystem needs a writable /tmp"
    )


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_serving_container_resources_probes_and_ports(kustomization):
    deployment = serving_deployment(build(kustomization))
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"] + pod.get("initContainers", []):
        resources = container["resources"]
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{container['name']} {section}"

    container = serving_container(deployment)
    assert container["image"].startswith("tensorflow/serving:"), "only the official image is expected"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "http": HTTP_PORT}
    args = container_args(container)
    assert args["--port"] == str(GRPC_PORT)
    assert args["--rest_api_port"] == str(HTTP_PORT)
    assert args["--enable_batching"] == "true"

    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[probe_name]
        handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
        assert handler, f"{probe_name} has no handler"
        assert ports.get(handler["port"], handler["port"]) in (GRPC_PORT, HTTP_PORT), probe_name
    # Readiness must reflect the model's status, not merely an open port.
    for probe_name in ("startupProbe", "readinessProbe"):
        http_get = container[probe_name]["httpGet"]
        assert http_get["path"] == f"/v1/models/{MODEL_NAME}"
        assert ports.get(http_get["port"], http_get["port"]) == HTTP_PORT
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "slow model loads must fit"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_serving_config_files_referenced_by_args_are_mounted(kustomization):
    objects = build(kustomization)
    deployment = serving_deployment(objects)
    container = serving_container(deployment)
    configmap = serving_configmap(objects)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == CONFIG_MOUNT)
    assert volumes[config_mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]

    args = container_args(container)
    for flag, key in (
        ("--model_config_file", "models.config"),
        ("--batching_parameters_file", "batching_parameters.pbtxt"),
        ("--monitoring_config_file", "monitoring.config"),
    ):
        assert args[flag] == f"{CONFIG_MOUNT}/{key}"
        assert key in configmap["data"], f"{flag} points at a file the ConfigMap lacks"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_model_base_path_is_readable_by_the_serving_pod(kustomization):
    objects = build(kustomization)
    config = parse_models_config(serving_configmap(objects)["data"]["models.config"])
    base_path = config.model_config_list.config[0].base_path
    deployment = serving_deployment(objects)
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in serving_container(deployment)["volumeMounts"]}

    if base_path.startswith("gs://"):
        # Read from the bucket through Workload Identity.
        account = find(objects, "ServiceAccount", pod["serviceAccountName"])
        assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert pod["automountServiceAccountToken"] is True
        assert "PersistentVolumeClaim" not in {o["kind"] for o in objects}
        assert not any(path.startswith("/models") for path in mounts)
    else:
        assert base_path in mounts, f"{base_path} from models.config is not mounted"
        mount = mounts[base_path]
        assert mount["readOnly"] is True, "serving must not be able to alter the model store"
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        claim = volume["persistentVolumeClaim"]
        assert claim["readOnly"] is True
        assert claim["claimName"] == "fakeface-models"
        assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_references_between_objects_resolve(kustomization):
    objects = build(kustomization)
    pod = serving_deployment(objects)["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in names(objects, "ConfigMap")
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in names(objects, "PersistentVolumeClaim")
    assert pod["serviceAccountName"] in names(objects, "ServiceAccount")

    binding = find(objects, "RoleBinding", "fakeface-pipeline-runner")
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["roleRef"]["name"] in names(objects, "Role")
    for subject in binding["subjects"]:
        assert subject["kind"] == "ServiceAccount"
        assert subject["name"] in names(objects, "ServiceAccount")
        assert subject["namespace"] == NAMESPACE


# --- Objects that target the serving pods ----------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_service_hpa_and_pdb_target_the_serving_pods(kustomization):
    objects = build(kustomization)
    deployment = serving_deployment(objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)

    service = find(objects, "Service", SERVING_DEPLOYMENT)
    assert service["spec"]["type"] == "ClusterIP"
    assert selects(service["spec"]["selector"], pod_labels)
    container_ports = {p["name"]: p["containerPort"] for p in serving_container(deployment)["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(service_ports) == {"grpc", "http"}
    for name, port in service_ports.items():
        assert port["port"] == container_ports[name]
        target = port["targetPort"]
        assert container_ports.get(target, target) == container_ports[name]

    pdb = find(objects, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)

    hpa = find(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # The HPA owns the replica count; one in the Deployment would reset it on every apply.
    assert "replicas" not in deployment["spec"]
    cpu_metrics = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu_metrics and cpu_metrics[0]["resource"]["target"]["type"] == "Utilization"

    # minAvailable may not consume every replica the HPA allows at its minimum,
    # or no voluntary eviction (node drain, upgrade) could ever proceed.
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1

    for constraint in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert selects(constraint["labelSelector"]["matchLabels"], pod_labels)


def test_base_scales_between_two_and_ten_replicas():
    objects = build(K8S_DIR / "base")
    hpa = find(objects, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    claim = find(objects, "PersistentVolumeClaim", "fakeface-models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "the Pusher and every replica share the store"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_network_policy_admits_only_labelled_clients_and_monitoring(kustomization):
    objects = build(kustomization)
    pod_labels = serving_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    policy = find(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert selects(spec["podSelector"]["matchLabels"], pod_labels)
    assert "Ingress" in spec["policyTypes"]

    admitted = {"clients": set(), "monitoring": set()}
    for rule in spec["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        assert all(p.get("protocol", "TCP") == "TCP" for p in rule["ports"])
        assert rule["from"], "an ingress rule without peers admits everyone"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            if peer.get("podSelector") is not None:
                # Labelled client pods, from any namespace.
                assert peer["podSelector"] == {"matchLabels": CLIENT_LABEL}
                assert peer["namespaceSelector"] == {}
                admitted["clients"] |= ports
            else:
                assert peer["namespaceSelector"] == {"matchLabels": MONITORING_NAMESPACE_LABEL}
                admitted["monitoring"] |= ports
    assert admitted == {"clients": {GRPC_PORT, HTTP_PORT}, "monitoring": {HTTP_PORT}}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_prometheus_annotations_point_at_the_metrics_endpoint(kustomization):
    objects = build(kustomization)
    annotations = find(objects, "Service", SERVING_DEPLOYMENT)["metadata"]["annotations"]
    monitoring = parse_monitoring_config(serving_configmap(objects)["data"]["monitoring.config"])
    assert monitoring.prometheus_config.enable is True
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(HTTP_PORT)
    assert annotations["prometheus.io/path"] == monitoring.prometheus_config.path


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_pipeline_runner_role_is_least_privilege(kustomization):
    role = find(build(kustomization), "Role", "fakeface-pipeline-runner")
    granted = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert not any("*" in key or "*" in verbs for key, verbs in granted.items())
    assert granted[("", "pods")] == {"get", "list", "watch"}
    assert granted[("", "pods/log")] == {"get"}
    assert granted[("", "configmaps")] == {"get"}
    assert granted[("", "secrets")] == {"get"}, "listing secrets would expose every secret's data"
    assert granted[("", "persistentvolumeclaims")] == {"get", "list", "create"}
    assert not any("delete" in verbs or "deletecollection" in verbs for verbs in granted.values())


# --- TF Serving config: single source and validity --------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_configmap_carries_exactly_the_serving_files(kustomization):
    configmap = serving_configmap(build(kustomization))
    expected = {key: path.read_text() for key, path in expected_serving_files(kustomization).items()}
    assert configmap["data"] == expected


def test_serving_config_files_have_no_copies_under_k8s():
    declared = {path.resolve() for overlay in OVERLAYS for path in overlay_config_overrides(overlay).values()}
    for name in SERVING_CONFIG_FILES:
        for path in K8S_DIR.rglob(name):
            assert path.resolve() in declared, (
                f"{path} is a copy of serving/{name} that no overlay declares as an override; "
                "edit serving/ instead"
            )


MODELS_CONFIG_OVERRIDES = {
    overlay.name: overlay_config_overrides(overlay)["models.config"]
    for overlay in OVERLAYS
    if "models.config" in overlay_config_overrides(overlay)
}


@pytest.mark.parametrize("override", MODELS_CONFIG_OVERRIDES.values(), ids=MODELS_CONFIG_OVERRIDES.keys())
def test_overlay_models_config_differs_only_in_base_path(override):
    source = parse_models_config((SERVING_DIR / "models.config").read_text())
    variant = parse_models_config(override.read_text())
    assert variant.model_config_list.config[0].base_path != source.model_config_list.config[0].base_path
    for config in (source, variant):
        config.model_config_list.config[0].ClearField("base_path")
    assert variant == source


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=KUSTOMIZATION_IDS)
def test_built_serving_config_files_parse(kustomization):
    data = serving_configmap(build(kustomization))["data"]
    assert set(data) == set(SERVING_CONFIG_FILES)
    for key, text in data.items():
        PARSERS[key](text)


def test_models_config_serves_fakeface_with_rollback_headroom():
    config = parse_models_config((SERVING_DIR / "models.config").read_text())
    models = config.model_config_list.config
    assert len(models) == 1
    model = models[0]
    assert model.name == MODEL_NAME
    assert model.base_path == f"/models/{MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2


def test_batching_parameters_are_consistent():
    from fakeface.serving import client as client_lib

    params = parse_batching_parameters((SERVING_DIR / "batching_parameters.pbtxt").read_text())
    for field in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches",
                  "enable_large_batch_splitting", "max_execution_batch_size"):
        assert params.HasField(field), field
    # Large requests are split into the batches the client sends by default.
    assert params.enable_large_batch_splitting.value is True
    assert params.max_execution_batch_size.value == client_lib.DEFAULT_BATCH_SIZE
    assert params.max_batch_size.value >= 4 * params.max_execution_batch_size.value
    # A larger request would not fit the empty queue (shared_batch_scheduler.h: ValidateBatchTaskQueueCapacity).
    assert params.max_batch_size.value <= params.max_enqueued_batches.value * params.max_execution_batch_size.value
    assert 0 < params.batch_timeout_micros.value <= 10_000, "batching may add at most 10 ms latency"
    assert params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value >= 1
    # Padding to an allowed size repeats an image, which this model would decode again.
    assert not params.allowed_batch_sizes


def test_monitoring_config_enables_prometheus():
    config = parse_monitoring_config((SERVING_DIR / "monitoring.config").read_text())
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        (parse_models_config, 'model_config_list { config { name: "fakeface" base_dir: "/x" } }'),
        (parse_batching_parameters, "max_batch_size: 32"),
        (parse_batching_parameters, "max_batch_size { value: 32 } batch_timeout_ms { value: 5 }"),
        (parse_monitoring_config, "prometheus_config { enable: true path: 1 }"),
        (parse_monitoring_config, "prometheus { enable: true }"),
    ],
    ids=["unknown-model-field", "unwrapped-int64", "unknown-batching-field", "mistyped-path", "unknown-section"],
)
def test_config_parsers_reject_what_tf_serving_rejects(parser, text):
    with pytest.raises(text_format.ParseError):
        parser(text)


# --- Between the pipeline and serving --------------------------------------


def test_on_gke_the_pipeline_writes_the_bucket_through_workload_identity():
    from fakeface.pipeline import config as config_lib

    objects = build(K8S_DIR / "overlays" / "gke")
    runner = find(objects, "ServiceAccount", "fakeface-pipeline-runner")
    assert runner["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    assert config_lib.KubeflowConfig().service_account == "fakeface-pipeline-runner"
    launcher = find(objects, "ConfigMap", "kfp-launcher")
    assert launcher["metadata"]["namespace"] == NAMESPACE
    assert launcher["data"]["defaultPipelineRoot"] == config_lib.KubeflowConfig().pipeline_root


def test_on_kind_serving_reads_what_the_pusher_writes(tmp_path):
    import yaml as yaml_lib

    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import kfp_platform, kubeflow_runner

    objects = build(K8S_DIR / "overlays" / "kind")
    config = config_lib.from_dict({"kubeflow": {"serving_pvc": "fakeface-models",
                                                "serving_model_dir": "/models/fakeface"}})
    path = str(tmp_path / "kind.yaml")
    kubeflow_runner.compile_pipeline(config, path)
    with open(path) as f:
        spec, platform = yaml_lib.safe_load_all(f)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (pusher_mount,) = executors[kfp_platform.executor_label(spec, "Pusher")]["pvcMount"]
    assert pusher_mount["constant"] in names(objects, "PersistentVolumeClaim")

    deployment = serving_deployment(objects)
    (store,) = [m for m in serving_container(deployment)["volumeMounts"] if m["name"] == "model-store"]
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-store")
    assert volume["persistentVolumeClaim"]["claimName"] == pusher_mount["constant"]
    # The Pusher writes <mount>/<subPath>/<version>; serving reads the same folder as its base path.
    written = f"{pusher_mount['mountPath']}/{store['subPath']}"
    assert written == config.kubeflow.serving_model_dir
    base_path = parse_models_config(serving_configmap(objects)["data"]["models.config"]) \
        .model_config_list.config[0].base_path
    assert base_path == store["mountPath"]
