"""Clients for the fakeface detector: TF Serving over REST or gRPC, or in process.

One interface, three backends:

* `RestBackend`: TF Serving's REST predict API,
  `POST /v1/models/<name>[/versions/<n>]:predict` with
  `{"signature_name": "serving_default", "instances": [{"b64": ...}, ...]}`.
* `GrpcBackend`: TF Serving's `PredictionService.Predict` (tensorflow-serving-api).
* `InProcessBackend`: loads the SavedModel and calls the same signature, no server.

Every backend sends the encoded files as they are: decoding and resizing run
inside the model (`serving_default`), so clients never preprocess. An image
the model cannot decode comes back in its row with the reason
(`image_error`), never failing the request.

Each answer is traced to the version TF Serving served it from (the Pusher's
number, which the model cannot know): gRPC responses name it; REST requests
are addressed to the newest available version, read from the model's status,
unless a version is given; in process it is the version folder's name.

`Client` adds what a caller should not have to write: batching, bounded retries
with exponential back-off on transient failures only, and the halving of a
request the server rejects as a whole (one too large for its batching, for
instance), so that what can be scored is.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import os
import random
import re
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from fakeface import features

DEFAULT_MODEL_NAME = "fakeface"
SIGNATURE = features.SIGNATURE_BYTES
# serving_default's only input: a batch of encoded image files.
INPUT = features.IMAGE_BYTES
OUTPUTS = (features.FAKE_PROBABILITY, features.IS_FAKE, features.THRESHOLD, features.MODEL_VERSION,
           features.IMAGE_ERROR)
# max_execution_batch_size in serving/batching_parameters.pbtxt: the batch the
# server runs at once, so a request of this many is never split nor merged.
DEFAULT_BATCH_SIZE = 32


class ServingError(Exception):
    """The model could not be asked; str() says why."""


class ServerUnavailable(ServingError):
    """The server could not be reached, or kept failing transiently, after every retry."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


class ModelNotFound(ServingError):
    """The server answers, but the model (or the requested version) is not loaded."""


class RequestRejected(ServingError):
    """The model refused the request's input, e.g. bytes that are not an image.

    Never retried: the same input would be refused again.
    """


class TransientError(ServingError):
    """A failure worth retrying: connection refused or reset, UNAVAILABLE, deadline exceeded."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclasses.dataclass(frozen=True)
class Result:
    """The model's answer for one file, or why there is none (`error`, one line).

    `model_version` is when the model was trained; `served_version` the
    version TF Serving answered from ("" in process outside TF Serving's
    folder layout).
    """

    path: str
    fake_probability: Optional[float] = None
    is_fake: Optional[bool] = None
    threshold: Optional[float] = None
    model_version: Optional[str] = None
    served_version: Optional[str] = None
    error: Optional[str] = None

    def __post_init__(self):
        if self.error is not None:
            object.__setattr__(self, "error", one_line(self.error))

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def decision(self) -> str:
        if not self.ok:
            return "error"
        return features.LABEL_NAMES[features.FAKE if self.is_fake else features.REAL]


# TensorFlow wraps an op's message in graph-execution boilerplate; only the
# op's own sentence tells a user what is wrong with their file.
_TF_NOISE = re.compile(r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\s*\[\[)")


def clean_error(message: str) -> str:
    """The informative lines of a TensorFlow / TF Serving error message, on one line."""
    lines = [line.strip() for line in str(message).splitlines()]
    kept = [line for line in lines if line and not _TF_NOISE.match(line)]
    text = " ".join(kept) if kept else str(message).strip()
    return re.sub(r"\s*\[\[\{\{node [^}]*\}\}\]\].*$", "", text).strip() or str(message).strip()


class Backend(abc.ABC):
    """Asks a model about a batch of encoded images. Subclasses talk to one kind of server."""

    description = "model"

    @abc.abstractmethod
    def predict(self, images: Sequence[bytes]) -> List[Dict[str, object]]:
        """One dict of `OUTPUTS` and SERVED_VERSION per image, in order.

        Raises RequestRejected, ModelNotFound, TransientError or ServingError.
        """

    @abc.abstractmethod
    def model_status(self) -> str:
        """The loaded version; raises ModelNotFound when none is ready."""

    def close(self) -> None:
        """Releases connections; the default has none."""


def _rows_from_columns(columns: Dict[str, Sequence[object]], count: int) -> List[Dict[str, object]]:
    missing = [name for name in OUTPUTS if name not in columns]
    if missing:
        raise ServingError(f"the model's answer lacks {', '.join(missing)}; is this a fakeface model?")
    if any(len(columns[name]) != count for name in OUTPUTS):
        raise ServingError(f"the model answered for a different number of images than the {count} sent")
    return [{name: columns[name][i] for name in OUTPUTS} for i in range(count)]


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _typed(row: Dict[str, object], served_version: str) -> Dict[str, object]:
    return {features.FAKE_PROBABILITY: float(row[features.FAKE_PROBABILITY]),
            features.IS_FAKE: bool(row[features.IS_FAKE]),
            features.THRESHOLD: float(row[features.THRESHOLD]),
            features.MODEL_VERSION: _text(row[features.MODEL_VERSION]),
            features.IMAGE_ERROR: _text(row[features.IMAGE_ERROR]),
            features.SERVED_VERSION: served_version}


class RestBackend(Backend):
    """TF Serving's REST API (port 8501 by default).

    `row_format` (default) sends {"instances": [{"b64": ...}]}, one instance per
    image; otherwise the columnar {"inputs": {"image_bytes": [{"b64": ...}]}}.
    Both are TF Serving's documented formats; row format is what most tools and
    examples send, the columnar one avoids repeating per-row structure.
    """

    def __init__(self, url: str, model_name: str = DEFAULT_MODEL_NAME, version: Optional[int] = None,
                 timeout: float = 30.0, connect_timeout: float = 5.0, row_format: bool = True):
        import requests

        self._requests = requests
        if "://" not in url:
            url = "http://" + url
        self.base_url = url.rstrip("/")
        self.model_url = f"{self.base_url}/v1/models/{model_name}"
        self.version = None if version is None else str(int(version))
        self.status_url = self.model_url + (f"/versions/{self.version}" if self.version else "")
        # The version requests go to when none is given: the newest available.
        self._newest: Optional[str] = None
        self.model_name = model_name
        self.timeout = (connect_timeout, timeout)
        self.row_format = row_format
        self.description = f"TF Serving REST at {self.base_url} (model {model_name!r})"
        self._session = requests.Session()

    def request_body(self, images: Sequence[bytes]) -> Dict[str, object]:
        encoded = [{"b64": base64.b64encode(data).decode("ascii")} for data in images]
        if self.row_format:
            return {"signature_name": SIGNATURE, "instances": encoded}
        return {"signature_name": SIGNATURE, "inputs": {INPUT: encoded}}

    @staticmethod
    def parse_response(body: Dict[str, object], count: int) -> List[Dict[str, object]]:
        if "predictions" in body:
            rows = body["predictions"]
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ServingError("TF Serving's predictions are not one object per image")
            if len(rows) != count:
                raise ServingError(f"TF Serving answered {len(rows)} predictions for {count} images")
            return _rows_from_columns({name: [r.get(name) for r in rows] for name in OUTPUTS
                                       if all(name in r for r in rows)}, count)
        if "outputs" in body and isinstance(body["outputs"], dict):
            return _rows_from_columns(body["outputs"], count)
        raise ServingError(f"unexpected TF Serving answer: {str(body)[:200]}")

    def _call(self, method: str, url: str, **kwargs) -> Dict[str, object]:
        requests = self._requests
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as e:
            raise TransientError(f"no answer from {self.base_url} within the timeout ({e})") from e
        except requests.ConnectionError as e:
            # urllib3 nests the OS error several exceptions deep; its errno text
            # ("Connection refused") is what a user needs.
            cause = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
            raise TransientError(f"cannot connect to {self.base_url}: "
                                 f"{cause.group(1) if cause else e}") from e
        try:
            body = response.json()
        except ValueError:
            body = {}
        message = clean_error(body.get("error", "") if isinstance(body, dict) else "") or response.reason
        status = response.status_code
        if status == 200 and isinstance(body, dict):
            return body
        if status == 404:
            raise ModelNotFound(f"model {self.model_name!r} is not loaded at {self.base_url}: {message}")
        if status == 400:
            raise RequestRejected(message)
        # 503: UNAVAILABLE (starting, unloading, batch queue full); 504: deadline
        # exceeded; 429: RESOURCE_EXHAUSTED. All pass with time.
        if status in (429, 503, 504):
            raise TransientError(f"HTTP {status} from {self.base_url}: {message}")
        raise ServingError(f"HTTP {status} from {self.base_url}: {message}")

    def predict_url(self, version: str) -> str:
        return f"{self.model_url}/versions/{version}:predict"

    def predict(self, images: Sequence[bytes]) -> List[Dict[str, object]]:
        body = self.request_body(images)
        version = self.version or self._newest or self.model_status()
        try:
            answer = self._call("POST", self.predict_url(version), json=body)
        except ModelNotFound:
            if self.version:
                raise
            # Rolled away since its status was read: ask again which is newest.
            self._newest = None
            version = self.model_status()
            answer = self._call("POST", self.predict_url(version), json=body)
        return [_typed(row, version) for row in self.parse_response(answer, len(images))]

    def model_status(self) -> str:
        body = self._call("GET", self.status_url)
        statuses = body.get("model_version_status") or []
        available = [s.get("version") for s in statuses if s.get("state") == "AVAILABLE"]
        if not available:
            states = ", ".join(f"version {s.get('version')}: {s.get('state')}" for s in statuses) or "none"
            raise ModelNotFound(f"model {self.model_name!r} at {self.base_url} has no AVAILABLE version ({states})")
        newest = str(max(available, key=int))
        if not self.version:
            self._newest = newest
        return newest

    def close(self) -> None:
        self._session.close()


class GrpcBackend(Backend):
    """TF Serving's gRPC PredictionService (port 8500 by default)."""

    def __init__(self, target: str, model_name: str = DEFAULT_MODEL_NAME, version: Optional[int] = None,
                 timeout: float = 30.0):
        import grpc
        from tensorflow_serving.apis import (model_service_pb2_grpc,
                                             prediction_service_pb2_grpc)

        self._grpc = grpc
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.description = f"TF Serving gRPC at {target} (model {model_name!r})"
        # TF Serving accepts messages up to 2 GiB; the client's 4 MiB default
        # would refuse a batch of large photos before it leaves.
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1),
                                                               ("grpc.max_receive_message_length", -1)])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel).Predict
        self._status = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus

    def _model_spec(self, spec) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = int(self.version)

    def request(self, images: Sequence[bytes]):
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec)
        request.model_spec.signature_name = SIGNATURE
        request.inputs[INPUT].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(
                size=len(images))]),
            string_val=list(images)))
        return request

    def _rpc(self, method: Callable, request):
        grpc = self._grpc
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code, details = e.code(), clean_error(e.details() or "")
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise TransientError(f"{code.name} from {self.target}: {details}") from e
            if code == grpc.StatusCode.NOT_FOUND:
                raise ModelNotFound(f"model {self.model_name!r} is not loaded at {self.target}: {details}") from e
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                raise RequestRejected(details) from e
            raise ServingError(f"{code.name} from {self.target}: {details}") from e

    def predict(self, images: Sequence[bytes]) -> List[Dict[str, object]]:
        import tensorflow as tf

        response = self._rpc(self._predict, self.request(images))
        columns = {name: tf.make_ndarray(response.outputs[name]).reshape(-1).tolist()
                   for name in OUTPUTS if name in response.outputs}
        # TF Serving names the version that answered (predict_util.cc: MakeModelSpec).
        served = str(response.model_spec.version.value) if response.model_spec.HasField("version") else ""
        return [_typed(row, served) for row in _rows_from_columns(columns, len(images))]

    def model_status(self) -> str:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec)
        response = self._rpc(self._status, request)
        available_state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        available = [s.version for s in response.model_version_status if s.state == available_state]
        if not available:
            states = ", ".join(
                f"version {s.version}: {get_model_status_pb2.ModelVersionStatus.State.Name(s.state)}"
                for s in response.model_version_status) or "none"
            raise ModelNotFound(f"model {self.model_name!r} at {self.target} has no AVAILABLE version ({states})")
        return str(max(available))

    def close(self) -> None:
        self._channel.close()


def resolve_model_dir(path: str) -> str:
    """A SavedModel folder: `path` itself, or its highest numeric version folder.

    TF Serving's model base path holds versions as numbered folders; the
    in-process backend takes the same layout so one path works for both.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = [int(name) for name in os.listdir(path)
                    if name.isdigit() and os.path.isfile(os.path.join(path, name, "saved_model.pb"))]
        if versions:
            return os.path.join(path, str(max(versions)))
    raise ModelNotFound(f"{path}: no SavedModel (saved_model.pb) here or in a numeric version folder")


class InProcessBackend(Backend):
    """Loads the SavedModel and calls its serving_default signature directly.

    The served version is the version folder's name, as TF Serving would
    report it for this layout; "" for a SavedModel outside that layout.
    """

    def __init__(self, model_dir: str):
        import tensorflow as tf

        self._tf = tf
        self.model_dir = resolve_model_dir(model_dir)
        self.description = f"SavedModel at {self.model_dir}"
        self._model = tf.saved_model.load(self.model_dir)
        if SIGNATURE not in self._model.signatures:
            raise ServingError(f"{self.model_dir} has no {SIGNATURE!r} signature "
                               f"(it has: {', '.join(sorted(self._model.signatures)) or 'none'})")
        self._signature = self._model.signatures[SIGNATURE]

    def predict(self, images: Sequence[bytes]) -> List[Dict[str, object]]:
        tf = self._tf
        try:
            outputs = self._signature(**{INPUT: tf.constant(list(images), dtype=tf.string)})
        except tf.errors.InvalidArgumentError as e:
            raise RequestRejected(clean_error(e.message)) from e
        except tf.errors.OpError as e:
            raise ServingError(f"{self.description}: {clean_error(e.message)}") from e
        columns = {name: outputs[name].numpy().tolist() for name in OUTPUTS if name in outputs}
        return [_typed(row, self.served_version) for row in _rows_from_columns(columns, len(images))]

    @property
    def served_version(self) -> str:
        name = os.path.basename(self.model_dir.rstrip("/"))
        return name if name.isdigit() else ""

    def model_status(self) -> str:
        return self.served_version


def _result(path: str, row: Dict[str, object]) -> Result:
    versions = {features.MODEL_VERSION: row[features.MODEL_VERSION],
                features.SERVED_VERSION: row[features.SERVED_VERSION]}
    if row[features.IMAGE_ERROR]:
        return Result(path, error=row[features.IMAGE_ERROR], **versions)
    return Result(path, fake_probability=row[features.FAKE_PROBABILITY], is_fake=row[features.IS_FAKE],
                  threshold=row[features.THRESHOLD], **versions)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off: attempt k waits about initial * multiplier**k seconds."""

    attempts: int = 4
    initial_backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 10.0

    def delay(self, retry: int) -> float:
        # Jitter keeps many clients that failed together from retrying together.
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** retry)
        return base * random.uniform(0.5, 1.0)


class Client:
    """Scores files with a Backend: batching, retries, and halving of rejected requests."""

    def __init__(self, backend: Backend, batch_size: int = DEFAULT_BATCH_SIZE,
                 retry: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        if retry.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, not {retry.attempts}")
        self.backend = backend
        self.batch_size = batch_size
        self.retry = retry
        self._sleep = sleep
        self.requests_sent = 0

    def _with_retries(self, call: Callable[[], object]):
        last: Optional[TransientError] = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self._sleep(self.retry.delay(attempt - 1))
            self.requests_sent += 1
            try:
                return call()
            except TransientError as e:
                last = e
        raise ServerUnavailable(
            f"{self.backend.description} is unavailable after {self.retry.attempts} attempt(s): {last}",
            attempts=self.retry.attempts)

    def model_status(self) -> str:
        """The loaded model version; raises ServerUnavailable or ModelNotFound with a clear message."""
        return self._with_retries(self.backend.model_status)

    def _score(self, items: Sequence[Tuple[str, bytes]]) -> List[Result]:
        try:
            rows = self._with_retries(lambda: self.backend.predict([data for _, data in items]))
        except RequestRejected as e:
            if len(items) == 1:
                return [Result(items[0][0], error=str(e))]
            # Rejected as a whole: by a server that takes fewer images per
            # request, or a model that fails on an input. Halving finds one
            # such input in about 2*log2(batch) requests, scoring every half
            # without it on the way.
            middle = len(items) // 2
            return self._score(items[:middle]) + self._score(items[middle:])
        return [_result(path, row) for (path, _), row in zip(items, rows)]

    def predict(self, items: Iterable[Tuple[str, bytes]]) -> Iterator[Result]:
        """Scores (path, encoded image) pairs, `batch_size` per request, in order.

        A file the model cannot score yields a Result with `error`; ServingError
        is raised only for failures that concern the server, not a file.
        """
        batch: List[Tuple[str, bytes]] = []
        for item in items:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield from self._score(batch)
                batch = []
        if batch:
            yield from self._score(batch)

    def predict_files(self, paths: Iterable[str]) -> Iterator[Result]:
        """Scores files; one that cannot be read yields a Result with `error`, in its place."""
        unreadable: Dict[int, Result] = {}
        readable: List[Tuple[int, str, bytes]] = []
        order = 0

        def flush() -> Iterator[Result]:
            scored = dict(zip((i for i, _, _ in readable),
                              self._score([(path, data) for _, path, data in readable]) if readable else []))
            scored.update(unreadable)
            for index in sorted(scored):
                yield scored[index]

        for path in paths:
            try:
                with open(path, "rb") as f:
                    readable.append((order, path, f.read()))
            except OSError as e:
                unreadable[order] = Result(path, error=f"cannot read the file: {e.strerror or e}")
            order += 1
            if len(readable) == self.batch_size:
                yield from flush()
                readable, unreadable = [], {}
        if readable or unreadable:
            yield from flush()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_files(paths: Iterable[str], exclude: Sequence[str] = ()) -> Iterator[str]:
    """Every regular file named, or below a folder named, in sorted order.

    Nothing is filtered by extension: the model decides what is an image, so a
    file that is not one is reported rather than silently skipped. Folders in
    `exclude` (e.g. an output folder inside the input) are not entered.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) not in excluded)
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if os.path.isfile(full):
                        yield full
        elif os.path.exists(path):
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")


def make_client(rest: Optional[str] = None, grpc: Optional[str] = None, model_dir: Optional[str] = None,
                model_name: str = DEFAULT_MODEL_NAME, version: Optional[int] = None,
                timeout: float = 30.0, batch_size: int = DEFAULT_BATCH_SIZE,
                retry: RetryPolicy = RetryPolicy(), row_format: bool = True) -> Client:
    """A Client for exactly one of: a REST URL, a gRPC host:port, a SavedModel folder."""
    chosen = [name for name, value in (("rest", rest), ("grpc", grpc), ("model_dir", model_dir)) if value]
    if len(chosen) != 1:
        raise ValueError("give exactly one of a REST URL, a gRPC host:port or a model folder")
    if rest:
        backend: Backend = RestBackend(rest, model_name, version, timeout=timeout, row_format=row_format)
    elif grpc:
        backend = GrpcBackend(grpc, model_name, version, timeout=timeout)
    else:
        backend = InProcessBackend(model_dir)
    return Client(backend, batch_size=batch_size, retry=retry)
