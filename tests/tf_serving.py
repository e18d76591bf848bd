"""TF Serving for the tests: the real tensorflow_model_server when one is on PATH, or an emulation.

`ModelServer` starts the real binary with the repository's serving/ config
files, only the model base path replaced. `Emulation` is NOT TF Serving: it
is this module's Python re-implementation, in process, of the parts of TF
Serving 2.16.1 the tests rely on, each from its source:

* REST (model_servers/http_rest_api_handler.cc, util/json_tensor.cc): predict
  in row ("instances") and columnar ("inputs") form, {"b64": ...} for
  DT_STRING, one unnamed input; classify, whose "examples" become tf.Examples
  ({"b64"} and strings as bytes, integers as int64, other numbers as floats);
  answers as "predictions" / "outputs" / "results", strings base64-encoded only
  for outputs named *_bytes, NaN written as NaN; model status; errors as
  {"error": message} with http_server.cc's status codes.
* gRPC: PredictionService.Predict and Classify, ModelService.GetModelStatus;
  answers name the version that served them (MakeModelSpec).
* Predict (predict_util.cc) takes a signature of the predict, classify or
  regress method; Classify (classifier.cc) only one of the classify method,
  with one input "inputs" of serialized tf.Examples and outputs "classes" and/or
  "scores" of [batch, classes].
* Batching (batching/batching_session.cc, TensorFlow's shared_batch_scheduler.h),
  read from serving/batching_parameters.pbtxt: requests to one signature are
  queued; a request over max_batch_size is refused ("Task size N is larger than
  maximum input batch size M"); with enable_large_batch_splitting a request is
  split across batches of at most max_execution_batch_size; batches are merged
  until full or batch_timeout_micros has passed, run by num_batch_threads
  threads, one Session::Run each, whose error fails every request in it; a full
  queue is UNAVAILABLE.
* Warm-up (servables/tensorflow/saved_model_warmup_util.cc): on load, every
  record of assets.extra/tf_serving_warmup_requests is replayed; one that fails
  fails the load.

The emulation also has test hooks TF Serving has not (`unavailable_for`,
`model_state`) to make it misbehave on purpose.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from concurrent import futures
from typing import Callable, Dict, List, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc)

from test_k8s_manifests import SERVING_DIR, parse_batching_parameters, parse_models_config

MODEL_NAME = "fakeface"
BINARY = "tensorflow_model_server"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


class ServingError(Exception):
    """A TF Serving error: `code` is the grpc.StatusCode it answers with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
               grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.UNAVAILABLE: 503,
               grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.RESOURCE_EXHAUSTED: 429}


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# ---------------------------------------------------------------- REST JSON (util/json_tensor.cc)

def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)


def _b64decode(value) -> bytes:
    try:
        return base64.b64decode(value["b64"], validate=True)
    except ValueError as e:
        raise _invalid(f"Unable to base64 decode: {e}") from e


def _decode_string_tensor(value):
    """A DT_STRING JSON value (nested lists of strings / {"b64": ...}) as a numpy object array."""
    if isinstance(value, list):
        return np.array([_decode_string_tensor(v) for v in value], dtype=object) if value else \
            np.array([], dtype=object)
    if _is_b64(value):
        return _b64decode(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise _invalid(f"JSON Value: {json.dumps(value)} Type: {type(value).__name__} is not of expected type: string")


def _json_object(body: bytes) -> dict:
    try:
        request = json.loads(body)
    except ValueError as e:
        raise _invalid(f"JSON Parse error: {e}") from e
    if not isinstance(request, dict):
        raise _invalid("JSON Value is not an object")
    return request


def decode_rest_request(body: bytes, inputs_of: Callable[[str], Sequence[str]]):
    """(signature_name, {input: np.ndarray}, row_format) as TF Serving decodes a predict body.

    `inputs_of(signature_name)`: the input names of that signature.
    """
    request = _json_object(body)
    signature = request.get("signature_name", "serving_default")
    input_names = sorted(inputs_of(signature))
    if ("instances" in request) == ("inputs" in request):
        raise _invalid("Missing 'inputs' or 'instances' key" if "instances" not in request else
                       "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise _invalid("Expecting 'instances' to be an list/array with at least one element")
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if named:
            keys = set(instances[0])
            if any(not isinstance(i, dict) or _is_b64(i) or set(i) != keys for i in instances):
                raise _invalid("Expecting object but got list / an object with different keys")
            if keys != set(input_names):
                raise _invalid(f"Failed to process element: 0 key: {sorted(keys - set(input_names))} "
                               "of 'instances' list. Error: Invalid argument: JSON object: does not have "
                               "named input")
            return signature, {k: _decode_string_tensor([i[k] for i in instances]) for k in keys}, True
        if len(input_names) != 1:
            raise _invalid("instances without names need a signature with exactly one input")
        return signature, {input_names[0]: _decode_string_tensor(instances)}, True
    inputs = request["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        if set(inputs) != set(input_names):
            raise _invalid(f"Missing named input(s): {sorted(set(input_names) - set(inputs))}")
        return signature, {k: _decode_string_tensor(v) for k, v in inputs.items()}, False
    if len(input_names) != 1:
        raise _invalid("an unnamed 'inputs' value needs a signature with exactly one input")
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


def encode_rest_response(outputs: Dict[str, np.ndarray], row_format: bool) -> bytes:
    columns = {name: [_json_value(name, v) for v in values] for name, values in outputs.items()}
    if row_format:
        sizes = {len(v) for v in columns.values()}
        if len(sizes) != 1:
            raise _invalid("Tensor output batch sizes differ; row format needs them equal")
        rows = [{name: values[i] for name, values in columns.items()} for i in range(sizes.pop())]
        return json.dumps({"predictions": rows}).encode()
    return json.dumps({"outputs": columns}).encode()


def _feature(name: str, content) -> tf.train.Feature:
    """One tf.Example feature from JSON, by AddValueToFeature's rules."""
    feature = tf.train.Feature()
    for value in content if isinstance(content, list) else [content]:
        if _is_b64(value):
            feature.bytes_list.value.append(_b64decode(value))
        elif isinstance(value, str):
            feature.bytes_list.value.append(value.encode("utf-8"))
        elif isinstance(value, bool) or isinstance(value, int):
            feature.int64_list.value.append(int(value))
        elif isinstance(value, float):
            feature.float_list.value.append(value)
        else:
            raise _invalid(f"Feature: {name} has element with unexpected JSON type: {type(value).__name__}")
    kinds = [kind for kind in ("bytes_list", "int64_list", "float_list") if feature.HasField(kind)]
    if len(kinds) > 1:
        raise _invalid(f"Unexpected element type in feature: {name}")
    return feature


def decode_classify_request(body: bytes) -> classification_pb2.ClassificationRequest:
    """A REST classify body as the ClassificationRequest TF Serving makes of it (FillClassifyRegressRequestFromJson)."""
    document = _json_object(body)
    request = classification_pb2.ClassificationRequest()
    if "signature_name" in document:
        request.model_spec.signature_name = document["signature_name"]
    examples = document.get("examples")
    if examples is None:
        raise _invalid("When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise _invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise _invalid("'examples' value is an empty array")
    for example in examples:
        if not isinstance(example, dict):
            raise _invalid(f"Example must be JSON object but got JSON {type(example).__name__}")
        added = request.input.example_list.examples.add()
        for name, content in example.items():
            added.features.feature[name].CopyFrom(_feature(name, content))
    return request


def encode_classify_response(response: classification_pb2.ClassificationResponse) -> bytes:
    """MakeJsonFromClassificationResult: {"results": [[[label, score], ...] per example]}."""
    return json.dumps({"results": [[[c.label, c.score] for c in classifications.classes]
                                   for classifications in response.result.classifications]}).encode()


# ---------------------------------------------------------------- one loaded version

class Servable:
    """One loaded version of the model: its signatures, with their method names."""

    def __init__(self, model_dir: str):
        from tensorflow.core.protobuf import saved_model_pb2

        self.model_dir = model_dir
        self.version = int(os.path.basename(model_dir.rstrip("/")))
        self.loaded = tf.saved_model.load(model_dir)
        saved_model = saved_model_pb2.SavedModel()
        with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
            saved_model.ParseFromString(f.read())
        self.signature_defs = dict(saved_model.meta_graphs[0].signature_def)

    def signature(self, name: str):
        name = name or "serving_default"
        if name not in self.signature_defs or name not in self.loaded.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
        return name, self.signature_defs[name]

    def run(self, name: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One Session::Run of a signature; an op's error is INVALID_ARGUMENT, as TF Serving's."""
        function = self.loaded.signatures[name]
        try:
            outputs = function(**{key: tf.constant(value) for key, value in inputs.items()})
        except (TypeError, tf.errors.InvalidArgumentError) as e:
            raise _invalid(getattr(e, "message", str(e))) from e
        return {key: value.numpy() for key, value in outputs.items()}


def _predict_inputs(signature_def, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """predict_util.cc: the request's inputs must be exactly the signature's."""
    if set(inputs) != set(signature_def.inputs):
        raise _invalid(f"input size does not match signature: {len(inputs)}!={len(signature_def.inputs)} "
                       f"len({{{','.join(sorted(inputs))}}}). Missing or extra inputs.")
    return inputs


def _classify_input(signature_def) -> str:
    """classifier.cc, PreProcessClassification: the checks of a classify signature."""
    if signature_def.method_name != tf.saved_model.CLASSIFY_METHOD_NAME:
        raise _invalid(f"Expected classification signature method_name to be "
                       f"{tf.saved_model.CLASSIFY_METHOD_NAME}. Was: {signature_def.method_name}")
    if len(signature_def.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    if len(signature_def.outputs) not in (1, 2):
        raise _invalid(f"Expected one or two output Tensors, found {len(signature_def.outputs)}")
    if tf.saved_model.CLASSIFY_INPUTS not in signature_def.inputs:
        raise _invalid("No classification inputs found in SignatureDef")
    if not {tf.saved_model.CLASSIFY_OUTPUT_CLASSES, tf.saved_model.CLASSIFY_OUTPUT_SCORES} & set(
            signature_def.outputs):
        raise _invalid('Expected classification signature outputs to contain at least one of "classes" '
                       'or "scores"')
    return tf.saved_model.CLASSIFY_INPUTS


def classification_result(outputs: Dict[str, np.ndarray], count: int) -> classification_pb2.ClassificationResult:
    """classifier.cc, PostProcessClassificationResult."""
    classes = outputs.get(tf.saved_model.CLASSIFY_OUTPUT_CLASSES)
    scores = outputs.get(tf.saved_model.CLASSIFY_OUTPUT_SCORES)
    for tensor, kind in ((classes, np.object_), (scores, np.float32)):
        if tensor is not None and (tensor.ndim != 2 or tensor.shape[0] != count or tensor.dtype != kind):
            raise _invalid(f"Expected Tensor shape: [batch_size num_classes] of {kind.__name__}, "
                           f"got {tensor.shape} {tensor.dtype}")
    result = classification_pb2.ClassificationResult()
    width = (classes if classes is not None else scores).shape[1]
    for i in range(count):
        classifications = result.classifications.add()
        for c in range(width):
            added = classifications.classes.add()
            if classes is not None:
                added.label = classes[i, c].decode("utf-8")
            if scores is not None:
                added.score = float(scores[i, c])
    return result


# ---------------------------------------------------------------- batching

@dataclasses.dataclass
class _Task:
    signature: str
    inputs: Dict[str, np.ndarray]
    size: int
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    pieces: Dict[int, Dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    remaining: int = 0
    error: Optional[ServingError] = None


@dataclasses.dataclass
class _Piece:
    task: _Task
    start: int
    stop: int
    queued: float


class Batcher:
    """Session-level batching, per signature, as configured by a BatchingParameters message."""

    def __init__(self, params, run: Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]):
        self.max_batch_size = params.max_batch_size.value
        self.splitting = params.enable_large_batch_splitting.value
        self.max_execution = params.max_execution_batch_size.value if self.splitting else self.max_batch_size
        self.timeout = params.batch_timeout_micros.value / 1e6
        self.max_enqueued = params.max_enqueued_batches.value
        self._run = run
        self._queues: Dict[str, List[_Piece]] = {}
        self._condition = threading.Condition()
        self._stopping = False
        self.batch_sizes: List[int] = []  # of every batch run, for the tests
        self.held = False  # test hook: while set, no batch is formed, so requests queue up and merge
        self._threads = [threading.Thread(target=self._work, daemon=True)
                         for _ in range(params.num_batch_threads.value)]
        for thread in self._threads:
            thread.start()

    def submit(self, signature: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        sizes = {len(value) for value in inputs.values()}
        if len(sizes) != 1:
            raise _invalid("Batching session: inputs have different 0th dimension sizes")
        size = sizes.pop()
        if size > self.max_batch_size:
            raise _invalid(f"Task size {size} is larger than maximum input batch size {self.max_batch_size}")
        task = _Task(signature, inputs, size)
        with self._condition:
            queue = self._queues.setdefault(signature, [])
            queued = sum(p.stop - p.start for p in queue)
            if queued + size > self.max_enqueued * self.max_execution:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   "The batch scheduling queue to which this task was submitted is full")
            step = self.max_execution if self.splitting else size
            starts = list(range(0, size, step)) or [0]
            task.remaining = len(starts)
            now = time.monotonic()
            queue.extend(_Piece(task, start, min(start + step, size), now) for start in starts)
            self._condition.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return {name: np.concatenate([task.pieces[start][name] for start in sorted(task.pieces)])
                for name in task.pieces[0]}

    def _take(self) -> Optional[List[_Piece]]:
        """A batch of pieces of one signature: full, or its oldest piece waited batch_timeout."""
        while not self._stopping:
            if self.held:
                self._condition.wait()
                continue
            now, waits = time.monotonic(), []
            for queue in self._queues.values():
                if not queue:
                    continue
                size, count = 0, 0
                for piece in queue:
                    if size + piece.stop - piece.start > self.max_execution:
                        break
                    size, count = size + piece.stop - piece.start, count + 1
                # Full when nothing more fits; with splitting, the next piece fills the room.
                full = size == self.max_execution or count < len(queue)
                if not full and now - queue[0].queued < self.timeout:
                    waits.append(queue[0].queued + self.timeout - now)
                    continue
                batch = queue[:count]
                del queue[:count]
                room = self.max_execution - size
                if room and queue and self.splitting:
                    head = queue[0]
                    batch.append(_Piece(head.task, head.start, head.start + room, head.queued))
                    head.task.remaining += 1
                    queue[0] = _Piece(head.task, head.start + room, head.stop, head.queued)
                return batch
            self._condition.wait(timeout=min(waits) if waits else None)
        return None

    def _work(self) -> None:
        while True:
            with self._condition:
                batch = self._take()
            if batch is None:
                return
            signature = batch[0].task.signature
            merged = {name: np.concatenate([p.task.inputs[name][p.start:p.stop] for p in batch])
                      for name in batch[0].task.inputs}
            self.batch_sizes.append(sum(p.stop - p.start for p in batch))
            try:
                outputs, error = self._run(signature, merged), None
            except ServingError as e:
                outputs, error = None, e
            except Exception as e:  # noqa: BLE001  (a worker that died would leave its requests waiting)
                outputs, error = None, ServingError(grpc.StatusCode.INTERNAL, str(e))
            offset = 0
            for piece in batch:
                count = piece.stop - piece.start
                if error is not None:
                    piece.task.error = error
                else:
                    piece.task.pieces[piece.start] = {name: value[offset:offset + count]
                                                      for name, value in outputs.items()}
                offset += count
                with self._condition:
                    piece.task.remaining -= 1
                    if not piece.task.remaining:
                        piece.task.done.set()

    def hold(self, held: bool) -> None:
        with self._condition:
            self.held = held
            self._condition.notify_all()

    def queued(self) -> int:
        with self._condition:
            return sum(piece.stop - piece.start for queue in self._queues.values() for piece in queue)

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)


# ---------------------------------------------------------------- the emulated server

class _RestHandler(http.server.BaseHTTPRequestHandler):
    server_version = "fakeface-tests-emulation"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, verb: str):
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?" + verb, self.path)
        if not match:
            raise ServingError(grpc.StatusCode.NOT_FOUND, "Malformed request: " + self.path)
        name, version = match.groups()
        return self.server.emulation.servable(name, None if version is None else int(version))

    def _answer(self, work) -> None:
        try:
            self._send(200, work())
        except ServingError as e:
            self._send(HTTP_STATUS.get(e.code, 500), {"error": str(e)})

    def do_GET(self):
        self._answer(lambda: self.server.emulation.status_json(self.path))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        emulation = self.server.emulation
        emulation.requests += 1
        if self.path.endswith(":classify"):
            def work():
                request = decode_classify_request(body)
                return encode_classify_response(emulation.classify(self._route(":classify"), request))
        else:
            def work():
                servable = self._route(":predict")
                name, inputs, row_format = decode_rest_request(
                    body, lambda signature: servable.signature(signature)[1].inputs)
                outputs = emulation.predict(servable, name, inputs)
                return encode_rest_response(outputs, row_format)
        self._answer(work)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, emulation: "Emulation"):
        self.emulation = emulation

    def _abort(self, context, error: ServingError):
        context.abort(error.code, str(error))

    def _servable(self, request):
        """The servable a request names, counting the request."""
        self.emulation.requests += 1
        return self.emulation.servable(request.model_spec.name, request.model_spec.version.value
                                       if request.model_spec.HasField("version") else None)

    def Predict(self, request, context):
        emulation = self.emulation
        try:
            servable = self._servable(request)
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            outputs = emulation.predict(servable, request.model_spec.signature_name, inputs)
        except ServingError as e:
            self._abort(context, e)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = MODEL_NAME
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def Classify(self, request, context):
        try:
            return self.emulation.classify(self._servable(request), request)
        except ServingError as e:
            self._abort(context, e)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, emulation: "Emulation"):
        self.emulation = emulation

    def GetModelStatus(self, request, context):
        spec = request.model_spec
        try:
            statuses = self.emulation.statuses(spec.name, spec.version.value if spec.HasField("version") else None)
        except ServingError as e:
            context.abort(e.code, str(e))
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in statuses:
            status = response.model_version_status.add()
            status.version = version
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        return response


def batching_parameters():
    """serving/batching_parameters.pbtxt, parsed."""
    return parse_batching_parameters((SERVING_DIR / "batching_parameters.pbtxt").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulation:
    """The emulated model server: REST and gRPC on 127.0.0.1, serving the versions under a base path."""

    implementation = "emulation"

    def __init__(self, base_path: str):
        self.base_path = base_path
        self.servables: Dict[int, Servable] = {}
        self.warmup_records = 0  # replayed on load, over every version
        self.requests = 0
        self.model_state = "AVAILABLE"  # test hook: what model status reports
        self.unavailable_for = 0  # test hook: this many predict calls answer UNAVAILABLE
        config = parse_models_config((SERVING_DIR / "models.config").read_text()).model_config_list.config[0]
        self.model_name = config.name
        self.num_versions = config.model_version_policy.latest.num_versions
        self.batcher = Batcher(batching_parameters(), self._run)
        self.poll()
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RestHandler)
        self._http.daemon_threads = True
        self._http.emulation = self
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._http_thread.start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                 options=[("grpc.max_receive_message_length", -1),
                                          ("grpc.max_send_message_length", -1)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(self), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"

    # --- versions (model_version_policy { latest { num_versions } })

    def poll(self) -> None:
        """Loads the newest num_versions versions under the base path and unloads the rest."""
        found = sorted(int(name) for name in os.listdir(self.base_path)
                       if name.isdigit() and os.path.isfile(os.path.join(self.base_path, name, "saved_model.pb")))
        wanted = found[-self.num_versions:]
        for version in wanted:
            if version not in self.servables:
                servable = Servable(os.path.join(self.base_path, str(version)))
                self.warmup_records += self._warm_up(servable)
                self.servables[version] = servable
        for version in list(self.servables):
            if version not in wanted:
                del self.servables[version]

    def _warm_up(self, servable: Servable) -> int:
        path = os.path.join(servable.model_dir, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            if log.HasField("predict_log"):
                request = log.predict_log.request
                self.predict(servable, request.model_spec.signature_name,
                             {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()},
                             batched=False)
            elif log.HasField("classify_log"):
                self.classify(servable, log.classify_log.request, batched=False)
            else:
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"Unsupported log_type for warmup: {log.WhichOneof('log_type')}")
            count += 1
        return count

    def servable(self, name: str, version: Optional[int]) -> Servable:
        if name != self.model_name or not self.servables or (version is not None and version not in self.servables):
            wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
        return self.servables[version if version is not None else max(self.servables)]

    def statuses(self, name: str, version: Optional[int]):
        if name != self.model_name or (version is not None and version not in self.servables):
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version(s) of model {name}")
        versions = [version] if version is not None else sorted(self.servables)
        return [(v, self.model_state) for v in versions]

    def status_json(self, path: str) -> dict:
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?", path)
        if not match:
            raise ServingError(grpc.StatusCode.NOT_FOUND, "Malformed request: " + path)
        name, version = match.groups()
        return {"model_version_status": [
            {"version": str(v), "state": state, "status": {"error_code": "OK", "error_message": ""}}
            for v, state in self.statuses(name, None if version is None else int(version))]}

    # --- the APIs

    def _run(self, key: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        version, signature = key.split("/", 1)
        if int(version) not in self.servables:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"version {version} was unloaded")
        return self.servables[int(version)].run(signature, inputs)

    def predict(self, servable: Servable, signature: str, inputs: Dict[str, np.ndarray],
                batched: bool = True) -> Dict[str, np.ndarray]:
        if self.unavailable_for > 0 and batched:
            self.unavailable_for -= 1
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               "The batch scheduling queue to which this task was submitted is full")
        name, signature_def = servable.signature(signature)
        if signature_def.method_name not in (tf.saved_model.PREDICT_METHOD_NAME, tf.saved_model.CLASSIFY_METHOD_NAME,
                                             tf.saved_model.REGRESS_METHOD_NAME):
            raise ServingError(grpc.StatusCode.INTERNAL, "Expected prediction signature method_name to be one of "
                                                         f"predict, classify or regress. Was: {signature_def.method_name}")
        inputs = _predict_inputs(signature_def, inputs)
        if not batched:
            return servable.run(name, inputs)
        return self.batcher.submit(f"{servable.version}/{name}", inputs)

    def classify(self, servable: Servable, request: classification_pb2.ClassificationRequest,
                 batched: bool = True) -> classification_pb2.ClassificationResponse:
        name, signature_def = servable.signature(request.model_spec.signature_name)
        input_name = _classify_input(signature_def)
        examples = np.array([example.SerializeToString() for example in request.input.example_list.examples],
                            dtype=object)
        if not len(examples):
            raise _invalid("Input is empty.")
        inputs = {input_name: examples}
        outputs = (self.batcher.submit(f"{servable.version}/{name}", inputs) if batched
                   else servable.run(name, inputs))
        response = classification_pb2.ClassificationResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = name
        response.result.CopyFrom(classification_result(outputs, len(examples)))
        return response

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._http_thread.join(timeout=10)
        self._grpc.stop(grace=None).wait(timeout=10)
        self.batcher.stop()


# ---------------------------------------------------------------- the real binary

class ModelServer:
    """tensorflow_model_server with serving/'s config files, the model base path replaced."""

    implementation = BINARY

    def __init__(self, base_path: str, work_dir: str, timeout: float = 180.0):
        from google.protobuf import text_format

        config = parse_models_config((SERVING_DIR / "models.config").read_text())
        config.model_config_list.config[0].base_path = base_path
        self.model_name = config.model_config_list.config[0].name
        config_path = os.path.join(work_dir, "models.config")
        with open(config_path, "w") as f:
            f.write(text_format.MessageToString(config))
        self.grpc_port, rest_port = _free_port(), _free_port()
        self.rest_url, self.grpc_target = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{self.grpc_port}"
        self.log_path = os.path.join(work_dir, "model_server.log")
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            [shutil.which(BINARY), f"--port={self.grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_config_file={config_path}", "--enable_batching=true",
             f"--batching_parameters_file={SERVING_DIR / 'batching_parameters.pbtxt'}",
             f"--monitoring_config_file={SERVING_DIR / 'monitoring.config'}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_available(timeout)

    def _wait_until_available(self, timeout: float) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{BINARY} exited with {self._process.returncode}; see {self.log_path}")
            try:
                status = requests.get(f"{self.rest_url}/v1/models/{self.model_name}", timeout=2).json()
                if any(s.get("state") == "AVAILABLE" for s in status.get("model_version_status", [])):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        self.close()
        raise RuntimeError(f"{BINARY} did not load the model within {timeout} s; see {self.log_path}")

    @property
    def warmup_records(self) -> int:
        """Warm-up records replayed, over every version loaded, as the server logs them."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return sum(int(n) for n in re.findall(r"Number of warmup records read: (\d+)", f.read()))

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


def start(implementation: str, base_path: str, work_dir: str):
    """The server named: BINARY (skips the test when it is not on PATH) or "emulation"."""
    import pytest

    if implementation == BINARY:
        if shutil.which(BINARY) is None:
            pytest.skip(f"no {BINARY} on PATH: these contract tests ran against the emulation only")
        return ModelServer(base_path, work_dir)
    return Emulation(base_path)
