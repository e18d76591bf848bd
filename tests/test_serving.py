"""Serving: the TF Serving wire contracts, the clients and `fakeface classify`.

No TF Serving binary exists where this is built, so the contracts are tested
against the exported model itself:

* REST: `decode_rest_request` / `encode_rest_response` below implement TF
  Serving's JSON rules (tensorflow_serving/util/json_tensor.cc: row format
  "instances" and columnar "inputs", {"b64": ...} for DT_STRING, one named
  input may be given bare; "predictions" / "outputs" in the answer, strings
  base64-encoded only for outputs named *_bytes). The client's body goes
  through them into the signature.
* gRPC: the client's PredictRequest, built with the official protos, is turned
  into the signature's inputs with tf.make_ndarray, as TF Serving does.
* End to end: an in-test REST server and an in-test gRPC server (the official
  PredictionService and ModelService stubs) on 127.0.0.1, backed by the pushed
  model, are driven by the real clients and CLI.
"""

import base64
import csv
import http.server
import io
import json
import os
import re
import shutil
import socket
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from fakeface import features, sample_data
from fakeface.serving import classify as classify_lib
from fakeface.serving import client as client_lib
from fakeface import cli as fakeface_cli
from fakeface.cli import errors as cli_errors

MODEL_NAME = "fakeface"


# ---------------------------------------------------------------- TF Serving's REST JSON rules

class RestError(Exception):
    """What TF Serving answers with HTTP 400 and {"error": str(e)}."""


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)


def _decode_string_tensor(value):
    """A DT_STRING JSON value (nested lists of strings / {"b64": ...}) as a numpy object array."""
    if isinstance(value, list):
        return np.array([_decode_string_tensor(v) for v in value], dtype=object) if value else \
            np.array([], dtype=object)
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as e:
            raise RestError(f"Unable to base64 decode: {e}") from e
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RestError(f"JSON Value: {json.dumps(value)} Type: {type(value).__name__} is not of expected type: string")


def decode_rest_request(body: bytes, input_names):
    """(signature_name, {input: np.ndarray}, row_format) as TF Serving decodes a predict body."""
    try:
        request = json.loads(body)
    except ValueError as e:
        raise RestError(f"JSON Parse error: {e}") from e
    if not isinstance(request, dict):
        raise RestError("JSON Value is not an object")
    signature = request.get("signature_name", "serving_default")
    if ("instances" in request) == ("inputs" in request):
        raise RestError("Missing 'inputs' or 'instances' key" if "instances" not in request else
                        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise RestError("Expecting 'instances' to be an list/array with at least one element")
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if named:
            keys = set(instances[0])
            if any(not isinstance(i, dict) or _is_b64(i) or set(i) != keys for i in instances):
                raise RestError("Expecting object but got list / an object with different keys")
            if keys != set(input_names):
                raise RestError(f"Failed to process element: 0 key: {sorted(keys - set(input_names))} "
                                "of 'instances' list. Error: Invalid argument: JSON object: does not have "
                                "named input")
            return signature, {k: _decode_string_tensor([i[k] for i in instances]) for k in keys}, True
        if len(input_names) != 1:
            raise RestError("instances without names need a signature with exactly one input")
        return signature, {input_names[0]: _decode_string_tensor(instances)}, True
    inputs = request["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        if set(inputs) != set(input_names):
            raise RestError(f"Missing named input(s): {sorted(set(input_names) - set(inputs))}")
        return signature, {k: _decode_string_tensor(v) for k, v in inputs.items()}, False
    if len(input_names) != 1:
        raise RestError("an unnamed 'inputs' value needs a signature with exactly one input")
    return signature, {input_names[0]: _decode_string_tensor(inputs)}, False


def _json_value(name: str, value):
    if isinstance(value, bytes):
        # TF Serving base64-encodes a string output only when its name ends in _bytes.
        return {"b64": base64.b64encode(value).decode("ascii")} if name.endswith("_bytes") \
            else value.decode("utf-8")
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value.item() if hasattr(value, "item") else value


def encode_rest_response(outputs, row_format: bool) -> bytes:
    columns = {name: [_json_value(name, v) for v in tensor.numpy()] for name, tensor in outputs.items()}
    if row_format:
        sizes = {len(v) for v in columns.values()}
        assert len(sizes) == 1, "TF Serving refuses outputs with different batch sizes in row format"
        rows = [{name: values[i] for name, values in columns.items()} for i in range(sizes.pop())]
        return json.dumps({"predictions": rows}).encode()
    return json.dumps({"outputs": columns}).encode()


def _signature_inputs(signature):
    return sorted(signature.structured_input_signature[1])


# ---------------------------------------------------------------- fixtures: model, images, servers

@pytest.fixture(scope="module")
def model_dir(pipeline_runs):
    _, first, _ = pipeline_runs
    return first.pushed_destination


@pytest.fixture(scope="module")
def signature(model_dir):
    return tf.saved_model.load(model_dir).signatures["serving_default"]


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _good_images():
    rng = np.random.default_rng(1)
    return [
        sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 32, seed=4)),
        sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[4], 1, 48, seed=4)),
        _encode(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8), "PNG"),
        _encode(rng.integers(0, 255, (20, 20), dtype=np.uint8), "PNG"),  # grayscale
        _encode(rng.integers(0, 255, (33, 40, 3), dtype=np.uint8), "BMP"),
    ]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, data in enumerate(_good_images()):
        path = folder / f"image_{i}.img"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def direct_scores(signature, image_files):
    data = [open(p, "rb").read() for p in image_files]
    return signature(image_bytes=tf.constant(data))[features.FAKE_PROBABILITY].numpy()


class _RestHandler(http.server.BaseHTTPRequestHandler):
    server_version = "FakeTFServing/REST"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _model_found(self, verb: str) -> bool:
        """Whether the path names the served model; answers 404 as TF Serving does when not."""
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?" + verb, self.path)
        if not match:
            self._send(404, {"error": "Malformed request: " + self.path})
            return False
        name, version = match.groups()
        if name != MODEL_NAME or (version is not None and version != self.server.state.version):
            wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            self._send(404, {"error": f"Servable not found for request: {wanted}"})
            return False
        return True

    def do_GET(self):
        if self._model_found(""):
            state = self.server.state
            self._send(200, {"model_version_status": [{"version": state.version, "state": state.model_state,
                                                       "status": {"error_code": "OK", "error_message": ""}}]})

    def do_POST(self):
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        state.predict_requests += 1
        if not self._model_found(":predict"):
            return
        if state.unavailable_for > 0:
            state.unavailable_for -= 1
            self._send(503, {"error": "The batch scheduling queue to which this task was submitted is full"})
            return
        try:
            name, inputs, row_format = decode_rest_request(body, _signature_inputs(state.signature))
            if name != "serving_default":
                raise RestError(f'Serving signature name: "{name}" not found in signature def')
            outputs = state.signature(**{k: tf.constant(list(v), tf.string) for k, v in inputs.items()})
        except RestError as e:
            self._send(400, {"error": str(e)})
            return
        except tf.errors.InvalidArgumentError as e:
            self._send(400, {"error": e.message})
            return
        self._send(200, encode_rest_response(outputs, row_format))


class _ServerState:
    def __init__(self, signature, version: str):
        self.signature = signature
        self.version = version
        self.model_state = "AVAILABLE"
        self.predict_requests = 0
        self.unavailable_for = 0


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, state):
        self.state = state

    def Predict(self, request, context):
        state = self.state
        state.predict_requests += 1
        spec = request.model_spec
        if spec.name != MODEL_NAME or (spec.HasField("version") and spec.version.value != int(state.version)):
            wanted = (f"Specific({spec.name}, {spec.version.value})" if spec.HasField("version")
                      else f"Latest({spec.name})")
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
        if request.model_spec.signature_name not in ("", "serving_default"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f'Serving signature name: "{request.model_spec.signature_name}" not found')
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        try:
            outputs = state.signature(**inputs)
        except (TypeError, tf.errors.InvalidArgumentError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, getattr(e, "message", str(e)))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = MODEL_NAME
        response.model_spec.version.value = int(state.version)
        response.model_spec.signature_name = "serving_default"
        for name, tensor in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
        return response


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, state):
        self.state = state

    def GetModelStatus(self, request, context):
        spec = request.model_spec
        if spec.name != MODEL_NAME or (spec.HasField("version") and spec.version.value != int(self.state.version)):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find version(s) of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = int(self.state.version)
        status.state = get_model_status_pb2.ModelVersionStatus.State.Value(self.state.model_state)
        return response


@pytest.fixture(scope="module")
def servers(model_dir, signature):
    """(REST URL, gRPC target, REST state, gRPC state) of two in-test servers on 127.0.0.1."""
    version = os.path.basename(model_dir.rstrip("/"))
    rest_state, grpc_state = _ServerState(signature, version), _ServerState(signature, version)
    http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RestHandler)
    http_server.daemon_threads = True
    http_server.state = rest_state
    http_thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    http_thread.start()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(grpc_state), grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(grpc_state), grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        yield (f"http://127.0.0.1:{http_server.server_address[1]}", f"127.0.0.1:{grpc_port}",
               rest_state, grpc_state)
    finally:
        http_server.shutdown()
        http_server.server_close()
        http_thread.join(timeout=10)
        grpc_server.stop(grace=None).wait(timeout=10)


@pytest.fixture
def reset_servers(servers):
    yield servers
    for state in servers[2:]:
        state.model_state, state.unavailable_for = "AVAILABLE", 0


def _client(kind: str, servers, model_dir, **kwargs):
    rest_url, grpc_target = servers[0], servers[1]
    sleeps = []
    retry = client_lib.RetryPolicy(attempts=3, initial_backoff=0.01)
    batch_size = kwargs.pop("batch_size", 4)
    if kind == "rest":
        backend = client_lib.RestBackend(rest_url, timeout=20, **kwargs)
    elif kind == "rest-columnar":
        backend = client_lib.RestBackend(rest_url, timeout=20, row_format=False, **kwargs)
    elif kind == "grpc":
        backend = client_lib.GrpcBackend(grpc_target, timeout=20, **kwargs)
    else:
        backend = client_lib.InProcessBackend(model_dir)
    client = client_lib.Client(backend, batch_size=batch_size, retry=retry,
                               sleep=sleeps.append)
    client.sleeps = sleeps
    return client


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- fast unit tests (no model)

def test_clean_error_keeps_only_the_ops_own_message():
    message = ("Graph execution error:\n\nDetected at node map/while/decode_image/DecodeImage defined at "
               "(most recent call last):\n<stack traces unavailable>\nUnknown image file format. One of "
               "JPEG, PNG, GIF, BMP required.\n\t [[{{node map/while/decode_image/DecodeImage}}]] "
               "[Op:__inference_signature_wrapper_2311]")
    assert client_lib.clean_error(message) == "Unknown image file format. One of JPEG, PNG, GIF, BMP required."


def test_model_dir_is_a_version_folder_or_the_highest_numbered_one(tmp_path):
    for version in ("3", "12", "notaversion"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "99").mkdir()  # a version still being copied: no saved_model.pb yet
    assert client_lib.resolve_model_dir(str(tmp_path)) == str(tmp_path / "12")
    assert client_lib.resolve_model_dir(str(tmp_path / "3")) == str(tmp_path / "3")
    with pytest.raises(client_lib.ModelNotFound, match="no SavedModel"):
        client_lib.resolve_model_dir(str(tmp_path / "99"))


def test_retry_backoff_grows_and_is_bounded():
    policy = client_lib.RetryPolicy(attempts=6, initial_backoff=1.0, multiplier=2.0, max_backoff=5.0)
    delays = [policy.delay(i) for i in range(5)]
    assert all(0.5 * b <= d <= b for d, b in zip(delays, [1, 2, 4, 5, 5]))


def test_rest_decoder_follows_tf_serving_rules():
    """The in-test decoder must itself be faithful, or the contract tests prove nothing."""
    data = b"\xff\xd8 raw"
    b64 = {"b64": base64.b64encode(data).decode()}
    names = ["image_bytes"]
    for body in ({"instances": [b64]}, {"instances": [{"image_bytes": b64}]},
                 {"inputs": [b64]}, {"inputs": {"image_bytes": [b64]}}):
        _, inputs, _ = decode_rest_request(json.dumps(body).encode(), names)
        assert list(inputs["image_bytes"]) == [data]
    _, inputs, _ = decode_rest_request(b'{"instances": ["plain"]}', names)
    assert list(inputs["image_bytes"]) == [b"plain"]  # a bare JSON string is taken as UTF-8 bytes
    for bad, message in ((b"{}", "Missing 'inputs' or 'instances'"),
                         (b'{"instances": [], "inputs": []}', "only one of"),
                         (b'{"instances": []}', "at least one element"),
                         (b'{"instances": [{"b64": "!!"}]}', "base64"),
                         (b'{"instances": [{"images": "x"}]}', "named input"),
                         (b'{"instances": [3]}', "not of expected type: string")):
        with pytest.raises(RestError, match=message):
            decode_rest_request(bad, names)


# ---------------------------------------------------------------- wire contracts against the pushed model

@pytest.mark.slow
@pytest.mark.parametrize("row_format", [True, False], ids=["row", "columnar"])
def test_rest_body_from_the_client_decodes_to_the_signature_inputs(signature, row_format):
    images = _good_images()
    backend = client_lib.RestBackend("http://127.0.0.1:1", row_format=row_format)
    body = json.dumps(backend.request_body(images)).encode()
    name, inputs, decoded_row_format = decode_rest_request(body, _signature_inputs(signature))
    assert (name, decoded_row_format) == ("serving_default", row_format)
    assert list(inputs["image_bytes"]) == images  # bit-exact: no client-side preprocessing

    outputs = signature(image_bytes=tf.constant(list(inputs["image_bytes"])))
    response = json.loads(encode_rest_response(outputs, row_format))
    # The client reads some of the signature's outputs; decision_score is for TFMA.
    signature_outputs = set(client_lib.OUTPUTS) | {features.DECISION_SCORE}
    if row_format:
        assert set(response) == {"predictions"} and len(response["predictions"]) == len(images)
        assert all(set(row) == signature_outputs for row in response["predictions"])
    else:
        assert set(response) == {"outputs"} and set(response["outputs"]) == signature_outputs
    rows = backend.parse_response(response, len(images))
    direct = signature(image_bytes=tf.constant(images))
    np.testing.assert_allclose([r[features.FAKE_PROBABILITY] for r in rows],
                               direct[features.FAKE_PROBABILITY].numpy(), rtol=1e-6)
    assert [r[features.IS_FAKE] for r in rows] == direct[features.IS_FAKE].numpy().tolist()
    assert {r[features.MODEL_VERSION] for r in rows} == {direct[features.MODEL_VERSION].numpy()[0].decode()}
    backend.close()


@pytest.mark.slow
def test_grpc_request_from_the_client_converts_to_the_signature_inputs(signature):
    images = _good_images()
    backend = client_lib.GrpcBackend("127.0.0.1:1", version=7)
    # Through the wire format and back, as the server receives it.
    request = predict_pb2.PredictRequest.FromString(backend.request(images).SerializeToString())
    assert request.model_spec.name == MODEL_NAME and request.model_spec.version.value == 7
    assert request.model_spec.signature_name == "serving_default"
    assert set(request.inputs) == set(_signature_inputs(signature))
    proto = request.inputs["image_bytes"]
    assert proto.dtype == tf.string.as_datatype_enum
    array = tf.make_ndarray(proto)
    assert array.shape == (len(images),) and list(array) == images
    by_grpc = signature(image_bytes=tf.constant(array))
    direct = signature(image_bytes=tf.constant(images))
    np.testing.assert_array_equal(by_grpc[features.FAKE_PROBABILITY].numpy(),
                                  direct[features.FAKE_PROBABILITY].numpy())
    backend.close()


# ---------------------------------------------------------------- clients end to end

KINDS = ["rest", "rest-columnar", "grpc", "in-process"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_client_gives_the_signatures_scores(kind, servers, model_dir, image_files, direct_scores):
    with _client(kind, servers, model_dir, batch_size=2) as client:  # several requests, one partial
        results = list(client.predict_files(image_files))
        version = client.model_status()
    assert [r.path for r in results] == image_files and all(r.ok for r in results)
    np.testing.assert_allclose([r.fake_probability for r in results], direct_scores, rtol=1e-6)
    assert all(r.is_fake == (r.fake_probability > r.threshold) for r in results)
    assert version == os.path.basename(model_dir)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_corrupt_file_fails_alone_with_the_models_reason(kind, servers, model_dir, image_files,
                                                           direct_scores, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(image_files[0], "rb").read()[:300])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    paths = image_files[:2] + [str(truncated)] + image_files[2:] + [str(text), str(tmp_path / "missing.jpg")]
    with _client(kind, servers, model_dir, batch_size=8) as client:
        results = list(client.predict_files(paths))
    assert [r.path for r in results] == paths
    by_path = {r.path: r for r in results}
    assert "JPEG" in by_path[str(truncated)].error
    assert "Unknown image file format" in by_path[str(text)].error
    assert "cannot read the file" in by_path[str(tmp_path / "missing.jpg")].error
    good = [by_path[p] for p in image_files]
    assert all(r.ok for r in good)
    np.testing.assert_allclose([r.fake_probability for r in good], direct_scores, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_an_unreachable_server_fails_fast_after_counted_retries(kind):
    target = f"127.0.0.1:{_closed_port()}"
    backend = (client_lib.RestBackend(target, timeout=5) if kind == "rest"
               else client_lib.GrpcBackend(target, timeout=5))
    sleeps = []
    client = client_lib.Client(backend, retry=client_lib.RetryPolicy(attempts=3, initial_backoff=0.2),
                               sleep=sleeps.append)
    started = time.monotonic()
    with pytest.raises(client_lib.ServerUnavailable, match="unavailable after 3 attempt") as error:
        list(client.predict([("a.jpg", b"x")]))
    assert time.monotonic() - started < 5
    assert error.value.attempts == 3 and client.requests_sent == 3
    assert len(sleeps) == 2 and 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4
    assert "refused" in str(error.value).lower()
    client.close()


@pytest.mark.slow
def test_a_transient_503_is_retried_with_backoff_and_then_succeeds(reset_servers, model_dir, image_files):
    rest_state = reset_servers[2]
    rest_state.unavailable_for = 2
    before = rest_state.predict_requests
    with _client("rest", reset_servers, model_dir, batch_size=8) as client:
        results = list(client.predict_files(image_files))
    assert all(r.ok for r in results)
    assert rest_state.predict_requests - before == 3 and len(client.sleeps) == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_a_rejected_file_is_not_retried(kind, servers, model_dir):
    state = servers[2] if kind.startswith("rest") else servers[3]
    before = state.predict_requests
    with _client(kind, servers, model_dir) as client:
        [result] = client.predict([("bad.jpg", b"bad")])
    assert not result.ok and state.predict_requests - before == 1 and client.sleeps == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_a_model_that_is_not_loaded_gives_a_clear_error(kind, reset_servers, model_dir):
    with _client(kind, reset_servers, model_dir, model_name="nosuchmodel") as client:
        with pytest.raises(client_lib.ModelNotFound, match="'nosuchmodel' is not loaded"):
            client.model_status()
        with pytest.raises(client_lib.ModelNotFound, match="Servable not found"):
            list(client.predict([("a.jpg", b"x")]))
        assert client.sleeps == []  # not transient: no retries
    served = int(os.path.basename(model_dir))
    with _client(kind, reset_servers, model_dir, version=served) as client:
        assert client.model_status() == str(served)
        assert all(r.ok for r in client.predict([("a.jpg", _good_images()[0])]))
    with _client(kind, reset_servers, model_dir, version=served + 1) as client:
        with pytest.raises(client_lib.ModelNotFound):
            list(client.predict([("a.jpg", _good_images()[0])]))
    for state in reset_servers[2:]:
        state.model_state = "LOADING"
    with _client(kind, reset_servers, model_dir) as client:
        with pytest.raises(client_lib.ModelNotFound, match="no AVAILABLE version.*LOADING"):
            client.model_status()


# ---------------------------------------------------------------- the CLI

def _cli(argv):
    return fakeface_cli.main(argv)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["--rest", "--grpc", "--model"])
def test_predict_command_prints_csv_and_json_and_flags_failures(target, servers, model_dir, image_files,
                                                                direct_scores, tmp_path, capsys):
    value = {"--rest": servers[0], "--grpc": servers[1], "--model": os.path.dirname(model_dir)}[target]
    folder = tmp_path / "in"
    folder.mkdir()
    for path in image_files:
        shutil.copy(path, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert _cli(["predict", target, value, "--format", "csv", str(folder)]) == cli_errors.EXIT_FAILED
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [os.path.basename(r["path"]) for r in rows] == sorted(os.listdir(folder))
    broken = [r for r in rows if r["path"].endswith("broken.png")]
    assert broken[0]["decision"] == "error" and broken[0]["error"]
    scored = {os.path.basename(r["path"]): float(r["fake_probability"]) for r in rows if r["decision"] != "error"}
    np.testing.assert_allclose([scored[os.path.basename(p)] for p in image_files], direct_scores, rtol=1e-5)
    assert "1 of 6 file(s) could not be scored" in captured.err

    assert _cli(["predict", target, value, "--format", "json", *image_files]) == cli_errors.EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([r["fake_probability"] for r in rows], direct_scores, rtol=1e-5)
    assert [r["decision"] for r in rows] == [
        "fake" if r["fake_probability"] > r["threshold"] else "real" for r in rows]


@pytest.mark.slow
def test_predict_command_says_when_the_server_is_unreachable(tmp_path, capsys, image_files):
    port = _closed_port()
    assert _cli(["predict", "--rest", f"http://127.0.0.1:{port}", "--retries", "1",
                 image_files[0]]) == cli_errors.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "unavailable after 2 attempt(s)" in err and "refused" in err


def test_predict_command_refuses_a_missing_path(capsys):
    assert _cli(["predict", "--model", "/nonexistent", "/nonexistent/file.jpg"]) == cli_errors.EXIT_USAGE
    assert "/nonexistent/file.jpg: no such file or folder" in capsys.readouterr().err


# ---------------------------------------------------------------- classify

def _make_source_folder(root):
    """Nested folders, JPEG and PNG, a name used twice, a corrupt JPEG and a text file."""
    rng = np.random.default_rng(2)
    files = {
        "a/face.jpg": sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 32, seed=5)),
        "b/face.jpg": sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[5], 0, 32, seed=5)),
        "b/deeper/face.jpg": sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[6], 1, 32, seed=5)),
        "b/deeper/photo.png": _encode(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), "PNG"),
        "top.jpg": sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[2], 3, 40, seed=5)),
        "a/corrupt.jpg": b"\xff\xd8\xff\xe0 this is not really a JPEG",
        "b/readme.txt": b"just text",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _outputs(dst):
    found = {}
    for category in classify_lib.CATEGORIES:
        for name in os.listdir(dst / category):
            found[f"{category}/{name}"] = (dst / category / name).read_bytes()
    return found


def _scores(dst):
    with open(dst / classify_lib.SCORES_FILE, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_classify_accounts_for_every_file_and_overwrites_nothing(model_dir, tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _make_source_folder(src)
    # A file already in the destination must survive untouched.
    (dst / "real").mkdir(parents=True)
    (dst / "real" / "face.jpg").write_bytes(b"the user's own file")
    (dst / "fake").mkdir()
    (dst / "fake" / "face.jpg").write_bytes(b"another of the user's files")

    assert _cli(["classify", str(src), str(dst), "--model", model_dir, "--no-progress"]) == 0
    assert f"{len(files)} file(s) copied" in capsys.readouterr().out
    outputs = _outputs(dst)
    assert outputs.pop("real/face.jpg") == b"the user's own file"
    assert outputs.pop("fake/face.jpg") == b"another of the user's files"
    # Every input is there once, byte for byte: real + fake + unreadable == inputs.
    assert sorted(outputs.values()) == sorted(files.values())
    assert len([k for k in outputs if k.startswith("unreadable/")]) == 2
    assert {outputs[k] for k in outputs if k.startswith("unreadable/")} == {files["a/corrupt.jpg"],
                                                                          files["b/readme.txt"]}
    assert all(os.path.basename(k).startswith("face (") for k in outputs if "face" in k)

    rows = _scores(dst)
    assert len(rows) == len(files)
    source_root = os.path.realpath(src)
    for row in rows:
        rel = os.path.relpath(row["source"], source_root)
        assert outputs[row["destination"]] == files[rel]
        assert row["category"] == row["destination"].split("/")[0]
        if row["category"] == "unreadable":
            assert row["reason"] and row[features.FAKE_PROBABILITY] == ""
        else:
            probability = float(row[features.FAKE_PROBABILITY])
            assert 0 <= probability <= 1 and row["reason"] == ""
            assert row["category"] == ("fake" if probability >= float(row[features.THRESHOLD]) else "real")
    assert (src / "a" / "corrupt.jpg").exists()  # copied, not moved

    # A re-run finds everything done and changes nothing.
    before = {p: os.stat(dst / p).st_mtime_ns for p in outputs}
    with client_lib.make_client(model_dir=model_dir) as client:
        summary = classify_lib.classify(client, str(src), str(dst), progress=False)
    assert (summary.placed, summary.skipped) == (0, len(files))
    assert _scores(dst) == rows
    assert {p: os.stat(dst / p).st_mtime_ns for p in before} == before

    # A new file, and a changed one, are picked up on the next run; the old copy stays.
    (src / "new.png").write_bytes(files["b/deeper/photo.png"])
    (src / "top.jpg").write_bytes(files["b/face.jpg"])
    with client_lib.make_client(model_dir=model_dir) as client:
        summary = classify_lib.classify(client, str(src), str(dst), progress=False)
    assert (summary.placed, summary.skipped) == (2, len(files) - 1)
    assert len(_scores(dst)) == len(files) + 2
    assert len(_outputs(dst)) == len(outputs) + 2 + 2


@pytest.mark.slow
def test_classify_move_empties_the_source_and_resumes_an_interrupted_run(model_dir, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _make_source_folder(src)
    with client_lib.make_client(model_dir=model_dir, batch_size=3) as client:
        summary = classify_lib.classify(client, str(src), str(dst), move=True, progress=False)
    assert summary.placed == len(files)
    assert [f for _, _, fs in os.walk(src) for f in fs] == []
    assert sorted(_outputs(dst).values()) == sorted(files.values())

    # Interrupted after the row was written but before the source was deleted:
    # the source reappears; the re-run finishes the move without a duplicate.
    row = _scores(dst)[0]
    os.makedirs(os.path.dirname(row["source"]), exist_ok=True)
    shutil.copy(dst / row["destination"], row["source"])
    # Interrupted after placing a copy but before recording it: the copy is adopted.
    [top] = [r for r in _scores(dst) if r["source"].endswith("top.jpg")]
    (src / "late.jpg").write_bytes(files["top.jpg"])
    (dst / top["category"] / "late.jpg").write_bytes(files["top.jpg"])
    with client_lib.make_client(model_dir=model_dir) as client:
        summary = classify_lib.classify(client, str(src), str(dst), move=True, progress=False)
    assert summary.moves_finished == 1 and summary.placed == 1
    assert [f for _, _, fs in os.walk(src) for f in fs] == []
    [late] = [r for r in _scores(dst) if r["source"].endswith("late.jpg")]
    assert late["destination"] == f"{top['category']}/late.jpg"  # adopted, not "late (1).jpg"
    assert len(_outputs(dst)) == len(files) + 1


@pytest.mark.slow
def test_classify_with_rotation_tta_keeps_the_structure_and_gives_probabilities(model_dir, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _make_source_folder(src)
    assert _cli(["classify", str(src), str(dst), "--model", model_dir, "--tta", "--tta-angles=-15,0,15",
                 "--no-progress"]) == 0
    rows = _scores(dst)
    assert len(rows) == len(files) and sorted(_outputs(dst).values()) == sorted(files.values())
    assert sum(r["category"] == "unreadable" for r in rows) == 2
    assert all(0 <= float(r[features.FAKE_PROBABILITY]) <= 1 for r in rows if r["category"] != "unreadable")


def test_rotation_variants_are_lossless_png_and_angle_zero_is_the_original():
    original = sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 32, seed=5))
    variants = classify_lib.rotations(original, [-15, 0, 15])
    assert variants[1] == original
    for variant in (variants[0], variants[2]):
        image = Image.open(io.BytesIO(variant))
        assert image.format == "PNG" and image.size == (32, 32)
    assert variants[0] != variants[2]


def test_classify_refuses_a_source_inside_the_destination(tmp_path):
    (tmp_path / "dst" / "inbox").mkdir(parents=True)
    with pytest.raises(ValueError, match="must not be the destination"):
        classify_lib.classify(None, str(tmp_path / "dst" / "inbox"), str(tmp_path / "dst"), progress=False)
