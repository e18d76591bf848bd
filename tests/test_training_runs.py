"""run_fn in processes of its own: resumed after a kill, and on two replicas."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fakeface.components.trainer import training
from fakeface.pipeline import pipeline

pytestmark = pytest.mark.slow
SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "run_trainer.py")


def _trainer_config(pipeline_runs, **trainer):
    config = pipeline_runs[0]
    custom = pipeline.trainer_custom_config(config)
    custom["trainer"].update(trainer)
    return custom


def _start(config, out_dir, custom, env_extra=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    return subprocess.Popen([sys.executable, SCRIPT, config.pipeline_root_path, str(out_dir),
                             json.dumps(custom)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_a_killed_trainer_resumes_from_its_last_checkpoint(pipeline_runs, tmp_path):
    config = pipeline_runs[0]
    epochs = 40
    custom = _trainer_config(pipeline_runs, epochs=epochs, checkpoint_every_steps=1,
                             early_stopping_patience=0)
    out = tmp_path / "out"
    checkpoints = os.path.join(str(out), "Trainer", "checkpoints")
    process = _start(config, out, custom)
    deadline = time.monotonic() + 300
    # Kill it once a few epochs are done, i.e. mid-run, as the loss of a node would.
    history = []
    while time.monotonic() < deadline and process.poll() is None:
        history = glob.glob(os.path.join(checkpoints, "*-history.csv"))
        if history and len(open(history[0]).read().splitlines()) > 3:
            break
        time.sleep(0.2)
    assert process.poll() is None, "training ended before it could be killed:\n" + process.stdout.read()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert glob.glob(os.path.join(checkpoints, "*", "*")), "no checkpoint was written"
    epochs_before_kill = len(open(history[0]).read().splitlines()) - 1
    curves = out / "Trainer" / "model_run" / "1" / "training_curves.csv"

    resumed = _start(config, out, custom)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    with open(out / "serving" / "assets.extra" / "training.json") as f:
        record = json.load(f)
    assert 0 < len(record["history"]["loss"]) <= epochs - epochs_before_kill + 1, \
        "the second run trained from scratch"
    rows = curves.read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(epochs)), "one row per epoch"
    assert (out / "Trainer" / "model_run" / "1" / "training_curves.png").stat().st_size > 0
    assert not glob.glob(os.path.join(checkpoints, "*", "*")), "finished runs leave no checkpoints"
    assert not glob.glob(os.path.join(checkpoints, "*-history.csv"))


def test_training_runs_on_two_replicas(pipeline_runs, tmp_path):
    """MirroredStrategy over two logical CPU devices, as it would over two GPUs."""
    custom = _trainer_config(pipeline_runs, epochs=1, strategy="mirrored")
    code = (
        "import os, sys, runpy; os.environ.setdefault('TF_USE_LEGACY_KERAS', '1');"
        "import tensorflow as tf;"
        "cpu = tf.config.list_physical_devices('CPU')[0];"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2);"
        f"sys.argv = {[SCRIPT, pipeline_runs[0].pipeline_root_path, str(tmp_path), json.dumps(custom)]!r};"
        "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stdout + result.stderr
    with open(tmp_path / "serving" / "assets.extra" / "training.json") as f:
        record = json.load(f)
    assert record["replicas"] == 2
    assert len(record["history"]["loss"]) == 1


def test_class_weights_balance_the_classes():
    weights = training.class_weights({0: 30, 1: 10})
    assert weights == {0: 40 / 60, 1: 40 / 20}
    assert 30 * weights[0] == pytest.approx(10 * weights[1])
    assert training.class_weights({1: 10}) is None


