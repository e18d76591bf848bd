"""Serving: the clients, `fakeface predict` and `fakeface classify`, against the pushed model.

The servers here are tests/tf_serving.py's emulation of TF Serving (not TF
Serving: no model server binary is available where this is built), with its
test hooks to make it fail on purpose; tests/test_tf_serving.py holds the
contract tests that also run against a real tensorflow_model_server when one
is on PATH.
"""

import base64
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2

import tf_serving
from fakeface import features, sample_data
from fakeface.serving import classify as classify_lib
from fakeface.serving import client as client_lib
from fakeface import cli as fakeface_cli
from fakeface.cli import errors as cli_errors

MODEL_NAME = "fakeface"


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


@pytest.fixture(scope="module")
def served_base(model_dir, tmp_path_factory):
    """A copy of the Pusher's base path, which tests may add versions to."""
    base = tmp_path_factory.mktemp("serving") / MODEL_NAME
    shutil.copytree(os.path.dirname(model_dir), base)
    return str(base)


@pytest.fixture(scope="module")
def emulation(served_base):
    server = tf_serving.Emulation(served_base)
    yield server
    server.close()


@pytest.fixture(scope="module")
def servers(emulation):
    """(REST URL, gRPC target, the emulation) on 127.0.0.1."""
    return emulation.rest_url, emulation.grpc_target, emulation


@pytest.fixture
def reset_servers(servers):
    yield servers
    servers[2].model_state, servers[2].unavailable_for = "AVAILABLE", 0


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
    """The emulation's decoder must itself be faithful, or the contract tests prove nothing."""
    data = b"\xff\xd8 raw"
    b64 = {"b64": base64.b64encode(data).decode()}

    def names(signature):
        return ["image_bytes"]

    for body in ({"instances": [b64]}, {"instances": [{"image_bytes": b64}]},
                 {"inputs": [b64]}, {"inputs": {"image_bytes": [b64]}}):
        _, inputs, _ = tf_serving.decode_rest_request(json.dumps(body).encode(), names)
        assert list(inputs["image_bytes"]) == [data]
    _, inputs, _ = tf_serving.decode_rest_request(b'{"instances": ["plain"]}', names)
    assert list(inputs["image_bytes"]) == [b"plain"]  # a bare JSON string is taken as UTF-8 bytes
    for bad, message in ((b"{}", "Missing 'inputs' or 'instances'"),
                         (b'{"instances": [], "inputs": []}', "only one of"),
                         (b'{"instances": []}', "at least one element"),
                         (b'{"instances": [{"b64": "!!"}]}', "base64"),
                         (b'{"instances": [{"images": "x"}]}', "named input"),
                         (b'{"instances": [3]}', "not of expected type: string")):
        with pytest.raises(tf_serving.ServingError, match=message):
            tf_serving.decode_rest_request(bad, names)


def test_every_reason_is_one_line():
    result = client_lib.Result("a.jpg", error="Graph execution error:\n\n  assertion failed\n\t[[node]]")
    assert result.error == "Graph execution error: assertion failed [[node]]"


# ---------------------------------------------------------------- wire contracts against the pushed model

@pytest.mark.slow
@pytest.mark.parametrize("row_format", [True, False], ids=["row", "columnar"])
def test_rest_body_from_the_client_decodes_to_the_signature_inputs(signature, row_format):
    images = _good_images()
    backend = client_lib.RestBackend("http://127.0.0.1:1", row_format=row_format)
    body = json.dumps(backend.request_body(images)).encode()
    name, inputs, decoded_row_format = tf_serving.decode_rest_request(body, lambda _: _signature_inputs(signature))
    assert (name, decoded_row_format) == ("serving_default", row_format)
    assert list(inputs["image_bytes"]) == images  # bit-exact: no client-side preprocessing

    outputs = signature(image_bytes=tf.constant(list(inputs["image_bytes"])))
    response = json.loads(tf_serving.encode_rest_response({k: v.numpy() for k, v in outputs.items()}, row_format))
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


def _trained_at(model_dir) -> str:
    with open(os.path.join(model_dir, "assets.extra", "training.json")) as f:
        return json.load(f)["model_version"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_client_gives_the_signatures_scores_and_both_version_ids(kind, servers, model_dir, image_files,
                                                                      direct_scores):
    with _client(kind, servers, model_dir, batch_size=2) as client:  # several requests, one partial
        results = list(client.predict_files(image_files))
        version = client.model_status()
    assert [r.path for r in results] == image_files and all(r.ok for r in results)
    np.testing.assert_allclose([r.fake_probability for r in results], direct_scores, rtol=1e-6)
    assert all(r.is_fake == (r.fake_probability > r.threshold) for r in results)
    assert version == os.path.basename(model_dir)
    assert {(r.served_version, r.model_version) for r in results} == {(version, _trained_at(model_dir))}


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_corrupt_file_fails_alone_with_the_models_reason(kind, servers, model_dir, image_files,
                                                           direct_scores, tmp_path):
    photo = sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[1], 0, 256, seed=4))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo[:len(photo) * 2 // 3])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    paths = image_files[:2] + [str(truncated)] + image_files[2:] + [str(text), str(tmp_path / "missing.jpg")]
    requests_before = servers[2].requests
    with _client(kind, servers, model_dir, batch_size=8) as client:
        results = list(client.predict_files(paths))
    assert [r.path for r in results] == paths
    by_path = {r.path: r for r in results}
    assert by_path[str(truncated)].error == ("the image data cannot be decoded: corrupt, truncated or of a kind "
                                             "the model does not take")
    assert by_path[str(text)].error == "not a JPEG, PNG, GIF or BMP image"
    assert "cannot read the file" in by_path[str(tmp_path / "missing.jpg")].error
    good = [by_path[p] for p in image_files]
    assert all(r.ok for r in good)
    np.testing.assert_allclose([r.fake_probability for r in good], direct_scores, rtol=1e-6)
    if kind != "in-process":  # one request: the bad files failed in it, not it
        assert servers[2].requests - requests_before == 1


@pytest.mark.slow
def test_rest_answers_are_traced_to_the_version_that_gave_them_across_a_rollout(servers, served_base, model_dir):
    """REST answers do not name their version: the client addresses the newest and follows rollouts."""
    emulation = servers[2]
    first = int(os.path.basename(model_dir))
    image = _good_images()[0]
    try:
        with _client("rest", servers, model_dir) as client:
            [before] = client.predict([("a.jpg", image)])
            # Two newer versions pushed: with num_versions 2 the first is unloaded.
            for version in (first + 1, first + 2):
                shutil.copytree(model_dir, os.path.join(served_base, str(version)))
            emulation.poll()
            assert sorted(emulation.servables) == [first + 1, first + 2]
            [after] = client.predict([("a.jpg", image)])
    finally:
        for version in (first + 1, first + 2):
            shutil.rmtree(os.path.join(served_base, str(version)), ignore_errors=True)
        emulation.poll()
    assert (before.served_version, after.served_version) == (str(first), str(first + 2))
    assert after.fake_probability == pytest.approx(before.fake_probability)


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
    emulation = reset_servers[2]
    emulation.unavailable_for = 2
    before = emulation.requests
    with _client("rest", reset_servers, model_dir, batch_size=8) as client:
        results = list(client.predict_files(image_files))
    assert all(r.ok for r in results)
    assert emulation.requests - before == 3 and len(client.sleeps) == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_a_request_rejected_as_a_whole_is_halved_and_not_retried(kind, servers, model_dir):
    """A request the server refuses as a whole is halved until the image it chokes on is alone."""
    emulation = servers[2]
    before = emulation.requests
    images = _good_images()[:3]
    with _client(kind, servers, model_dir) as client:
        backend = client.backend
        real_predict = backend.predict

        def predict(batch):  # a server that refuses any request holding the second image
            if images[1] in batch:
                raise client_lib.RequestRejected("Task size 3 is larger than maximum input batch size 2")
            return real_predict(batch)

        backend.predict = predict
        results = list(client.predict([(f"{i}.jpg", data) for i, data in enumerate(images)]))
    assert [r.ok for r in results] == [True, False, True] and client.sleeps == []
    assert results[1].error == "Task size 3 is larger than maximum input batch size 2"
    assert emulation.requests - before == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_a_model_that_is_not_loaded_gives_a_clear_error(kind, reset_servers, model_dir):
    with _client(kind, reset_servers, model_dir, model_name="nosuchmodel") as client:
        with pytest.raises(client_lib.ModelNotFound, match="'nosuchmodel' is not loaded"):
            client.model_status()
        with pytest.raises(client_lib.ModelNotFound, match="'nosuchmodel' is not loaded"):
            list(client.predict([("a.jpg", b"x")]))
        assert client.sleeps == []  # not transient: no retries
    served = int(os.path.basename(model_dir))
    with _client(kind, reset_servers, model_dir, version=served) as client:
        assert client.model_status() == str(served)
        assert all(r.ok for r in client.predict([("a.jpg", _good_images()[0])]))
    with _client(kind, reset_servers, model_dir, version=served + 1) as client:
        with pytest.raises(client_lib.ModelNotFound):
            list(client.predict([("a.jpg", _good_images()[0])]))
    reset_servers[2].model_state = "LOADING"
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
    assert {(r["served_version"], r["model_version"]) for r in rows} == {
        (os.path.basename(model_dir), _trained_at(model_dir))}
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
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith(f"{len(files)} file(s) copied: ") and "2 unreadable" in lines[-1]
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
        assert (row[features.SERVED_VERSION], row[features.MODEL_VERSION]) == (
            os.path.basename(model_dir), _trained_at(model_dir))
        if row["category"] == "unreadable":
            assert row["reason"] and "\n" not in row["reason"] and row[features.FAKE_PROBABILITY] == ""
        else:
            probability = float(row[features.FAKE_PROBABILITY])
            assert 0 <= probability <= 1 and row["reason"] == ""
            assert row["category"] == ("fake" if probability >= float(row[features.THRESHOLD]) else "real")
    assert (src / "a" / "corrupt.jpg").exists()  # copied, not moved

    # A re-run finds everything done and changes nothing; --strict still fails on the unreadable files.
    before = {p: os.stat(dst / p).st_mtime_ns for p in outputs}
    assert _cli(["classify", str(src), str(dst), "--model", model_dir, "--no-progress", "--strict"]) == 1
    captured = capsys.readouterr()
    assert "--strict: 2 file(s) unreadable" in captured.err
    assert captured.out.splitlines()[-1].startswith(f"0 file(s) copied: 0 real, 0 fake, 0 unreadable; "
                                                    f"{len(files)} already done")
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
    # Each file's score is the mean over its own rotations.
    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
    for row in rows:
        if row["category"] != "unreadable":
            rotated = classify_lib.rotations(open(row["source"], "rb").read(), [-15, 0, 15])
            expected = signature(image_bytes=tf.constant(rotated))[features.FAKE_PROBABILITY].numpy().mean()
            assert float(row[features.FAKE_PROBABILITY]) == pytest.approx(float(expected), abs=2e-6)


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


@pytest.mark.slow
def test_classify_removes_what_a_killed_run_left_unless_another_run_is_at_work(model_dir, tmp_path):
    import fcntl

    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _make_source_folder(src)
    (dst / "real").mkdir(parents=True)
    leftover = dst / "real" / (classify_lib.PARTIAL_PREFIX + "killed")
    leftover.write_bytes(b"half a copy")
    # Another run at work: its temporary files are live, so they stay.
    with open(dst / classify_lib.LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        with client_lib.make_client(model_dir=model_dir) as client:
            classify_lib.classify(client, str(src), str(dst), progress=False)
    assert leftover.exists()
    # No other run: what a killed run left is removed.
    with client_lib.make_client(model_dir=model_dir) as client:
        summary = classify_lib.classify(client, str(src), str(dst), progress=False)
    assert not leftover.exists() and summary.skipped == len(files)
    assert not [name for _, _, names in os.walk(dst) for name in names
                if name.startswith(classify_lib.PARTIAL_PREFIX)]


@pytest.mark.slow
def test_classify_takes_over_the_scores_of_an_earlier_version(model_dir, tmp_path):
    """A scores.csv without the served_version column gets it, empty for the rows it had."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _make_source_folder(src)
    with client_lib.make_client(model_dir=model_dir) as client:
        classify_lib.classify(client, str(src), str(dst), progress=False)
    rows = _scores(dst)
    old_columns = [c for c in classify_lib.COLUMNS if c != features.SERVED_VERSION]
    with open(dst / classify_lib.SCORES_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows[:-1])  # the last file not done yet
    with client_lib.make_client(model_dir=model_dir) as client:
        summary = classify_lib.classify(client, str(src), str(dst), progress=False)
    assert (summary.skipped, summary.placed) == (len(files) - 1, 1)
    migrated = _scores(dst)
    assert list(migrated[0]) == list(classify_lib.COLUMNS)
    assert [r[features.SERVED_VERSION] for r in migrated] == [""] * (len(files) - 1) + [os.path.basename(model_dir)]


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_an_interrupted_classify_says_how_to_resume_and_the_next_run_finishes(model_dir, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    image = sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 32, seed=5))
    for i in range(150):
        (src / f"{i:03d}.jpg").write_bytes(image + i.to_bytes(2, "big"))  # distinct files
    fakeface = os.path.join(os.path.dirname(sys.executable), "fakeface")
    command = [fakeface, "classify", str(src), str(dst), "--model", model_dir, "--batch-size", "1", "--no-progress"]
    # As from a terminal: a shell starts background jobs with Ctrl-C ignored.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = _wait_for(lambda: len(_scores(dst)) >= 3 if (dst / classify_lib.SCORES_FILE).exists() else False,
                        timeout=120)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert started, err.decode()
    assert process.returncode == cli_errors.EXIT_INTERRUPTED, err.decode()
    assert err.decode().strip().splitlines()[-1] == "fakeface classify: interrupted; run it again to resume"
    assert "Traceback" not in err.decode()
    done = len(_scores(dst))
    assert 3 <= done < 150

    finished = subprocess.run(command, capture_output=True, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode()
    assert finished.stdout.decode().splitlines()[-1].startswith(f"{150 - done} file(s) copied")
    assert len(_scores(dst)) == 150 and len(_outputs(dst)) == 150
