"""The pushed model under TF Serving: REST and gRPC predict, the Classify API, batching, warm-up.

Every test runs twice: against a real tensorflow_model_server started with
serving/'s config files, when one is on PATH (skipped, saying so, when none
is), and against tests/tf_serving.py's emulation of TF Serving 2.16.1.
"""

import base64
import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

import tf_serving
from fakeface import features, sample_data
from fakeface.serving import client as client_lib

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = [tf_serving.BINARY, "emulation"]
BAD = b"\xff\xd8\xff\xe0 not really a JPEG"


@pytest.fixture(scope="module")
def model_dir(pipeline_runs):
    _, first, _ = pipeline_runs
    return first.pushed_destination


@pytest.fixture(scope="module")
def direct(model_dir):
    """The pushed model's serving_default, called in process."""
    return tf.saved_model.load(model_dir).signatures[features.SIGNATURE_BYTES]


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def server(request, model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("server")
    server = tf_serving.start(request.param, os.path.dirname(model_dir), str(work))
    yield server
    server.close()


def _images(count: int):
    """Distinct sample JPEGs of a few sizes, a grayscale PNG among them."""
    import io

    from PIL import Image

    images = []
    for i in range(count):
        pixels = sample_data.render_image(sample_data.SOURCES[i % len(sample_data.SOURCES)], i, 32 + 2 * (i % 5),
                                          seed=11)
        if i % 7 == 3:
            buffer = io.BytesIO()
            Image.fromarray(pixels).convert("L").save(buffer, format="PNG")
            images.append(buffer.getvalue())
        else:
            images.append(sample_data.encode_jpeg(pixels))
    return images


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def _example(data: bytes) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_BYTES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}))


def _expected(direct, images):
    outputs = direct(image_bytes=tf.constant(images))
    return {name: value.numpy() for name, value in outputs.items()}


def _predict_url(server) -> str:
    return f"{server.rest_url}/v1/models/{tf_serving.MODEL_NAME}:predict"


# ---------------------------------------------------------------- what is exported

def test_every_signature_is_exported_with_warm_up_requests_of_one_image_and_a_full_batch(model_dir):
    path = os.path.join(model_dir, tf_serving.WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(record)
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    found = set()
    for log in logs:
        if log.HasField("predict_log"):
            request = log.predict_log.request
            [tensor] = request.inputs.values()
            found.add((request.model_spec.signature_name, tensor.tensor_shape.dim[0].size))
        else:
            request = log.classify_log.request
            found.add((request.model_spec.signature_name, len(request.input.example_list.examples)))
    full = client_lib.DEFAULT_BATCH_SIZE
    assert sorted(found) == sorted((name, size) for name in (
        features.SIGNATURE_BYTES, features.SIGNATURE_EXAMPLES, features.SIGNATURE_CLASSIFY) for size in (1, full))
    assert len(logs) == 6


def test_the_classify_signature_has_the_classify_method(model_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(Path(model_dir, "saved_model.pb").read_bytes())
    signatures = saved_model.meta_graphs[0].signature_def
    assert signatures[features.SIGNATURE_CLASSIFY].method_name == tf.saved_model.CLASSIFY_METHOD_NAME
    assert signatures[features.SIGNATURE_BYTES].method_name == tf.saved_model.PREDICT_METHOD_NAME
    assert list(signatures[features.SIGNATURE_CLASSIFY].inputs) == [tf.saved_model.CLASSIFY_INPUTS]
    assert sorted(signatures[features.SIGNATURE_CLASSIFY].outputs) == sorted(
        [tf.saved_model.CLASSIFY_OUTPUT_CLASSES, tf.saved_model.CLASSIFY_OUTPUT_SCORES])


# ---------------------------------------------------------------- against the server

def test_the_warm_up_requests_are_replayed_when_the_model_loads(server):
    assert server.warmup_records == 6


def test_rest_predict_scores_each_image_and_says_why_one_is_not_scored(server, direct):
    images = _images(4)
    body = {"signature_name": features.SIGNATURE_BYTES, "instances": [_b64(d) for d in images[:2] + [BAD] + images[2:]]}
    response = requests.post(_predict_url(server), json=body, timeout=60)
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    expected = _expected(direct, images)
    good = rows[:2] + rows[3:]
    np.testing.assert_allclose([r[features.FAKE_PROBABILITY] for r in good], expected[features.FAKE_PROBABILITY],
                               rtol=1e-6)
    assert all(r[features.IMAGE_ERROR] == "" for r in good)
    assert math.isnan(rows[2][features.FAKE_PROBABILITY]) and rows[2][features.IS_FAKE] is False
    assert rows[2][features.IMAGE_ERROR] == "the image header cannot be read"


def test_rest_classify_answers_real_and_fake_with_scores_whose_larger_is_the_decision(server, direct):
    images = _images(3)
    body = {"signature_name": features.SIGNATURE_CLASSIFY,
            "examples": [{features.IMAGE_BYTES: _b64(d)} for d in images + [BAD]]}
    response = requests.post(f"{server.rest_url}/v1/models/{tf_serving.MODEL_NAME}:classify", json=body,
                             timeout=60)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = _expected(direct, images)
    for result, score, is_fake in zip(results, expected[features.DECISION_SCORE], expected[features.IS_FAKE]):
        assert [label for label, _ in result] == ["real", "fake"]
        np.testing.assert_allclose([s for _, s in result], [1 - score, score], rtol=1e-5)
        assert (result[1][1] > result[0][1]) == is_fake
    assert all(math.isnan(s) for _, s in results[3])


def test_grpc_predict_and_classify_name_the_version_that_answered(server, direct, model_dir):
    images = _images(3)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_target))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = tf_serving.MODEL_NAME
    request.inputs[features.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    response = stub.Predict(request, timeout=60)
    version = int(os.path.basename(model_dir))
    assert response.model_spec.version.value == version
    np.testing.assert_allclose(tf.make_ndarray(response.outputs[features.FAKE_PROBABILITY]),
                               _expected(direct, images)[features.FAKE_PROBABILITY], rtol=1e-6)

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = tf_serving.MODEL_NAME
    classify.model_spec.signature_name = features.SIGNATURE_CLASSIFY
    for data in images:
        classify.input.example_list.examples.add().CopyFrom(_example(data))
    answer = stub.Classify(classify, timeout=60)
    assert answer.model_spec.version.value == version
    scores = _expected(direct, images)[features.DECISION_SCORE]
    for classifications, score in zip(answer.result.classifications, scores):
        assert [c.label for c in classifications.classes] == ["real", "fake"]
        assert classifications.classes[1].score == pytest.approx(score, rel=1e-5)

    # A signature of the predict method is refused by the Classify API.
    classify.model_spec.signature_name = features.SIGNATURE_EXAMPLES
    with pytest.raises(grpc.RpcError) as refused:
        stub.Classify(classify, timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expected classification signature method_name" in refused.value.details()


def test_a_request_over_a_batch_is_split_and_one_over_max_batch_size_refused(server, direct):
    images = _images(client_lib.DEFAULT_BATCH_SIZE + 8)
    response = requests.post(_predict_url(server), json={"instances": [_b64(d) for d in images]}, timeout=120)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose([r[features.FAKE_PROBABILITY] for r in response.json()["predictions"]],
                               _expected(direct, images)[features.FAKE_PROBABILITY], rtol=1e-6)
    if isinstance(server, tf_serving.Emulation):
        assert server.batcher.batch_sizes[-2:] == [client_lib.DEFAULT_BATCH_SIZE, 8]

    largest = tf_serving.batching_parameters().max_batch_size.value
    response = requests.post(_predict_url(server), json={"instances": [_b64(images[0])] * (largest + 1)},
                             timeout=120)
    assert response.status_code == 400
    assert f"Task size {largest + 1} is larger than maximum input batch size {largest}" in response.json()["error"]


def test_a_corrupt_image_fails_no_other_request_merged_into_its_batch(server, direct):
    images = _images(12)
    requests_of = [images[i:i + 2] for i in range(0, 12, 2)]
    requests_of[2] = [requests_of[2][0], BAD]
    emulated = isinstance(server, tf_serving.Emulation)
    if emulated:  # queue every request before any batch forms, so they merge
        server.batcher.hold(True)
    answers = [None] * len(requests_of)

    def send(index):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_target))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = tf_serving.MODEL_NAME
        request.inputs[features.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto(requests_of[index], dtype=tf.string))
        answers[index] = stub.Predict(request, timeout=120)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests_of))]
    for thread in threads:
        thread.start()
    if emulated:
        assert _eventually(lambda: server.batcher.queued() == 12)
        server.batcher.hold(False)
    for thread in threads:
        thread.join(timeout=180)
    if emulated:
        assert server.batcher.batch_sizes[-1] == 12, "the six requests ran as one batch"
    for sent, answer in zip(requests_of, answers):
        errors = [e.decode() for e in tf.make_ndarray(answer.outputs[features.IMAGE_ERROR])]
        probabilities = tf.make_ndarray(answer.outputs[features.FAKE_PROBABILITY])
        good = [i for i, data in enumerate(sent) if data != BAD]
        np.testing.assert_allclose(probabilities[good], _expected(direct, [sent[i] for i in good])[
            features.FAKE_PROBABILITY], rtol=1e-6)
        assert [bool(e) for e in errors] == [data == BAD for data in sent]


def _eventually(predicate, timeout: float = 60.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------- the recipes in the documents, as written

def _recipe(document: Path, marker: str) -> str:
    """The shell code block of `document` that contains `marker`."""
    blocks = re.findall(r"```sh\n(.*?)```", document.read_text(), flags=re.S)
    [block] = [b for b in blocks if marker in b]
    return block


def _large_photo(path: Path) -> Path:
    """A JPEG over 109 KB, the size at which the recipe with the file on the command line failed."""
    pixels = sample_data.render_image(sample_data.SOURCES[3], 0, 1024, seed=1)
    path.write_bytes(sample_data.encode_jpeg(pixels))
    assert path.stat().st_size > 109_000
    return path


def _run_recipe(recipe: str, server, work: Path, photo: Path) -> str:
    host = server.rest_url.split("://", 1)[1]
    script = (recipe.replace("localhost:8501", host).replace("python3 ", f"{sys.executable} ")
              .replace("face.jpg", str(photo)))
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_the_readme_predict_recipe_scores_a_real_sized_photo(server, direct, tmp_path):
    photo = _large_photo(tmp_path / "photo.jpg")
    answer = json.loads(_run_recipe(_recipe(REPO / "README.md", "request.json"), server, tmp_path, photo))
    [row] = answer["predictions"]
    assert row[features.IMAGE_ERROR] == ""
    assert row[features.FAKE_PROBABILITY] == pytest.approx(
        float(_expected(direct, [photo.read_bytes()])[features.FAKE_PROBABILITY][0]), rel=1e-6)


def test_the_serving_docs_classify_recipe_scores_a_real_sized_photo(server, direct, tmp_path):
    photo = _large_photo(tmp_path / "photo.jpg")
    answer = json.loads(_run_recipe(_recipe(REPO / "docs" / "serving.md", ":classify"), server, tmp_path, photo))
    [[real, fake]] = answer["results"]
    assert (real[0], fake[0]) == ("real", "fake")
    assert fake[1] == pytest.approx(float(_expected(direct, [photo.read_bytes()])[features.DECISION_SCORE][0]),
                                    rel=1e-5)
