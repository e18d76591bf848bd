"""Two default runs on fresh folders give the same model, threshold and test predictions, and both push it.

Each run ingests the sample data afresh, so its examples lie on disk in an
order of their own (Beam's Reshuffle); the Trainer's input does not depend on
it (components/trainer/inputs.py).
"""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow
FAKEFACE = os.path.join(os.path.dirname(sys.executable), "fakeface")


def _default_run(folder):
    """`fakeface sample-data` and `fakeface run` with every default, as `make run` does, in `folder`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([FAKEFACE, "sample-data", "fakeface_runs/sample_data"], cwd=folder, env=env, check=True,
                   capture_output=True)
    result = subprocess.run([FAKEFACE, "run"], cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Model blessed and pushed" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    (pushed,) = glob.glob(os.path.join(folder, "fakeface_runs", "serving", "fakeface", "*"))
    (predictions,) = glob.glob(os.path.join(folder, "fakeface_runs", "pipelines", "fakeface", "EvaluationReport",
                                            "report", "*", "predictions.csv"))
    with open(os.path.join(pushed, "assets.extra", "training.json")) as f:
        record = json.load(f)
    with open(predictions) as f:
        rows = {row["relative_path"]: row for row in csv.DictReader(f)}
    return pushed, record, rows


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    return [_default_run(str(tmp_path_factory.mktemp(f"default-run-{i}"))) for i in (1, 2)]


def test_the_default_input_is_cached_in_content_hash_order(two_runs):
    for _, record, _ in two_runs:
        assert record["input"]["cached"]


def test_two_fresh_default_runs_choose_the_same_threshold(two_runs):
    (_, first, _), (_, second, _) = two_runs
    assert first["decision"] == second["decision"]
    assert first["history"] == second["history"]


def test_two_fresh_default_runs_make_identical_test_predictions(two_runs):
    (_, _, first), (_, _, second) = two_runs
    assert first.keys() == second.keys() and len(first) > 50
    for path, row in first.items():
        assert row == second[path], path


def test_two_fresh_default_runs_push_the_same_weights(two_runs):
    (first, _, _), (second, _, _) = two_runs
    a = tf.train.load_checkpoint(os.path.join(first, "variables", "variables"))
    b = tf.train.load_checkpoint(os.path.join(second, "variables", "variables"))
    names = sorted(a.get_variable_to_shape_map())
    assert names == sorted(b.get_variable_to_shape_map()) and names
    for name in names:
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH":
            np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=name)
