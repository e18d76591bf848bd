"""The default config compiled for Kubeflow and run task by task as KFP v2 runs it.

Two runs of `fakeface compile` output through `fakeface run-compiled`'s
runner, on one pipeline root and one serving folder, as a scheduled
retraining would see them:

1. the default config, whose Trainer pod is killed once it has checkpointed:
   the retry policy runs it again, it resumes, and one model is pushed;
2. a clearly worse model (one epoch at a learning rate that barely moves the
   weights): the Evaluator compares it with the served model and refuses it,
   and the Pusher is skipped.
"""

import glob
import json
import os
import signal
import threading
import time
import types

import pytest
import tensorflow as tf
import yaml

from fakeface import features, sample_data
from fakeface.cli import main as fakeface_main
from fakeface.pipeline import compiled_runner, image_env

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _compile(tmp, name, config):
    config_path = tmp / f"{name}.config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    spec_path = str(tmp / f"{name}.yaml")
    assert fakeface_main(["compile", "--config", str(config_path), spec_path]) == 0
    return compiled_runner.load(spec_path), spec_path


def _kill_trainer_after_its_first_checkpoint(pipeline_root, killed):
    def on_start(task, attempt, process):
        if task != "Trainer" or attempt != 1:
            return

        def watch():
            deadline = time.monotonic() + 600
            while process.poll() is None and time.monotonic() < deadline:
                if glob.glob(os.path.join(pipeline_root, "fakeface", "*", "Trainer", "checkpoints", "*", "*")):
                    time.sleep(1)  # let the checkpoint's files finish writing
                    process.send_signal(signal.SIGKILL)  # as a preempted node does
                    killed.append(time.monotonic())
                    return
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()

    return on_start


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run_compiled")
    serving = str(tmp / "serving" / "fakeface")
    pipeline_root = str(tmp / "pipeline_root")
    defaults = {"runs_root": str(tmp / "runs"),
                "kubeflow": {"serving_model_dir": serving, "trainer_retry_backoff_seconds": 1}}
    sample_data.generate(str(tmp / "runs" / "sample_data"))
    environment, _ = image_env.build(REPO, str(tmp / "envs"))

    spec, spec_path = _compile(tmp, "default", defaults)
    killed = []
    first = compiled_runner.run(spec, pipeline_root, environment,
                                on_start=_kill_trainer_after_its_first_checkpoint(pipeline_root, killed))

    worse = json.loads(json.dumps(defaults))
    worse["trainer"] = {"epochs": 1, "learning_rate": 1e-7}
    worse_spec, _ = _compile(tmp, "worse", worse)
    second = compiled_runner.run(worse_spec, pipeline_root, environment)
    return types.SimpleNamespace(first=first, second=second, killed=killed, serving=serving, spec=spec,
                                 pipeline_root=pipeline_root)


def _output(run, task, key):
    return run.task(task).outputs[key]


def test_the_default_config_compiled_for_kubeflow_runs_and_pushes_a_model(cluster_runs):
    first = cluster_runs.first
    assert {t.name: t.state for t in first.tasks} == {t.name: "SUCCEEDED" for t in first.tasks}
    pushed = _output(first, "Pusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1.0
    versions = os.listdir(cluster_runs.serving)
    assert [os.path.join(cluster_runs.serving, v) for v in versions] == [pushed["pushed_destination"]]
    served = tf.saved_model.load(pushed["pushed_destination"]).signatures["serving_default"]
    image = sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 64, seed=5))
    assert 0.0 <= float(served(image_bytes=tf.constant([image]))[features.FAKE_PROBABILITY][0]) <= 1.0


def test_artifacts_live_where_kfp_puts_them(cluster_runs):
    first = cluster_runs.first
    model_uri = _output(first, "Trainer", "model")["uri"]
    # {root}/{pipeline name}/{run id}/{task}/{random id}/{output key}
    relative = os.path.relpath(model_uri, cluster_runs.pipeline_root).split(os.sep)
    assert relative[:3] == ["fakeface", first.run_id, "Trainer"] and relative[4] == "model"
    assert cluster_runs.spec["defaultPipelineRoot"] == "gs://YOUR_BUCKET/fakeface/pipelines"


def test_a_killed_trainer_pod_is_retried_and_resumes_from_its_checkpoint(cluster_runs):
    trainer = cluster_runs.first.task("Trainer")
    assert cluster_runs.killed and trainer.attempts == 2
    model_dir = os.path.join(_output(cluster_runs.first, "Trainer", "model")["uri"], "Format-Serving")
    with open(os.path.join(model_dir, "assets.extra", "training.json")) as f:
        record = json.load(f)
    epochs = record["config"]["trainer"]["epochs"]
    # The second attempt trained only the epochs the first had not finished,
    # and the curves still hold every epoch.
    assert 0 < len(record["history"]["loss"]) < epochs
    run_dir = _output(cluster_runs.first, "Trainer", "model_run")["uri"]
    with open(os.path.join(run_dir, "training_curves.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + epochs
    with open(trainer.log_path) as f:
        log = f.read()
    assert "attempt 1: exit status -9" in log and "attempt 2: exit status 0" in log


def test_a_clearly_worse_model_is_compared_with_the_served_one_and_not_pushed(cluster_runs):
    second = cluster_runs.second
    assert _output(second, "ServedModel", "served")["metadata"]["served_model_found"] == 1.0
    assert second.task("Pusher").state == "SKIPPED"
    assert len(os.listdir(cluster_runs.serving)) == 1
    reasons = _output(second, "EvaluationReport", "report")["metadata"]["not_blessed_because"]
    assert "change against the baseline" in reasons and "slice overall" in reasons
    outcome = compiled_runner.outcome(second)
    assert outcome[0].startswith("Model NOT pushed (skipped: Pusher)")
    assert any("not blessed: change against the baseline" in line for line in outcome)
