"""`fakeface run` as a user runs it: a subprocess, its terminal output, its log, its lock and exit codes."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from fakeface import sample_data
from fakeface.pipeline import runs

pytestmark = pytest.mark.slow

NODES = ("CuratedSchemaGen", "ImageExampleGen", "StatisticsGen", "Transform", "ExampleValidator", "Trainer",
         "ServedModel", "Evaluator", "EvaluationReport", "Pusher")
# The bound for a successful default run.
MAX_LINES = 40
# As a user's shell has it: conftest quiets TensorFlow's C++ logging for the tests themselves.
ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def _start(folder, *args, name="run"):
    """`fakeface run ARGS` in `folder`, its stdout and stderr in files (a pipe could fill and block it)."""
    out, err = open(folder / f"{name}.out", "w"), open(folder / f"{name}.err", "w")
    return subprocess.Popen([sys.executable, "-m", "fakeface.cli", "run", *args], cwd=folder, stdout=out,
                            stderr=err, env=ENV)


def _finish(process, folder, name="run", timeout=900):
    process.wait(timeout=timeout)
    return process.returncode, (folder / f"{name}.out").read_text(), (folder / f"{name}.err").read_text()


def _wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run_command")
    catalog = sample_data.generate(str(folder / "data"), per_source=12, size=32, seed=3)
    config = folder / "config.yaml"
    config.write_text(
        f"runs_root: {folder / 'runs'}\ncatalog: {catalog}\n"
        "splits: {train: 40, eval: 20, test: 40}\ntransform: {image_size: 32}\n"
        "trainer: {epochs: 2, batch_size: 8}\n"
        # Two epochs on a few dozen images prove the plumbing, not accuracy.
        "evaluator: {min_auc: 0.0, max_auc_drop: 1.0, max_real_source_fpr: 1.0}\n")
    return folder, str(config)


@pytest.fixture(scope="module")
def first_run(project):
    """A run, and a second run started while it holds the runs_root: (exit, stdout, stderr, refused)."""
    folder, config = project
    lock = folder / "runs" / runs.LOCK_FILE
    holder = _start(folder, "--config", config)
    _wait_for(lambda: lock.exists() and f'"pid": {holder.pid}' in lock.read_text())
    refused = subprocess.run([sys.executable, "-m", "fakeface.cli", "run", "--config", config], cwd=folder,
                             capture_output=True, text=True, timeout=120)
    return (*_finish(holder, folder), refused)


def test_a_second_run_on_the_runs_root_is_refused_naming_the_first(first_run):
    *_, refused = first_run
    assert refused.returncode == 1
    assert re.fullmatch(r"fakeface run: error: \S+: another run is using this runs_root: fakeface run, "
                        r"pid \d+ on host \S+, started 20\d\d-\S+ \(lock \S+run.lock\); wait for it to end, "
                        r"or give this run another runs_root\n", refused.stderr), refused.stderr


def test_a_run_prints_a_line_per_step_epochs_and_the_summary_and_logs_the_rest(first_run, project):
    code, out, err = first_run[:3]
    assert code == 0, err
    lines = out.splitlines() + err.splitlines()
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    for node in NODES:
        assert re.search(rf"^  {node} +(epochs 1 2 +)?complete +\d+\.\d s$", out, re.M), (node, out)
    assert re.search(r"^  Trainer +epochs 1 2 +complete", out, re.M)
    assert "Model blessed and pushed to" in out and "Test split, by source:" in out
    # Nothing from TensorFlow, absl, Beam, pip or Keras reaches the terminal ...
    assert not re.search(r"tensorflow|absl|apache_beam|Epoch 1/2|Successfully installed|Warning", out + err)
    # ... it is in the log, whose path the first line gives.
    log = re.match(r"Pipeline 'fakeface', run (\S+); log: (\S+)\n", out).group(2)
    assert os.path.dirname(log) == str(project[0] / "runs" / "logs" / "fakeface")
    with open(log) as f:
        text = f.read()
    assert "INFO:absl:Component Trainer is running." in text and "Epoch 1/2" in text
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: W tensorflow/\S+\.cc:\d+\]", text, re.M)  # C++


def test_a_failing_step_shows_its_name_the_end_of_its_log_and_the_log(first_run, project, tmp_path):
    folder, config = project
    # A model in the serving folder that TensorFlow cannot load: the Evaluator's baseline.
    broken = tmp_path / "served" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    failing = tmp_path / "failing.yaml"
    failing.write_text(open(config).read() + f"serving_model_dir: {tmp_path / 'served'}\n")
    code, out, err = _finish(_start(folder, "--config", str(failing), name="failing"), folder, name="failing")
    assert code == 1, err
    assert re.search(r"^  ImageExampleGen +cached", out, re.M) and re.search(r"^  Trainer +cached", out, re.M)
    assert re.search(r"^  Evaluator +failed +\d+\.\d s$", out, re.M), out
    log = re.search(r"; log: (\S+)", out).group(1)
    assert err.startswith("\nEvaluator failed. The last lines of its log:\n")
    assert err.rstrip("\n").splitlines()[-1].startswith("fakeface run: error: Evaluator failed (")
    assert err.rstrip("\n").endswith(f"the whole log: {log}")
    assert "Error parsing message with type 'tensorflow.SavedModel'" in err  # why, from the end of its log
    assert "Model blessed" not in out


def test_verbose_shows_everything_and_an_interrupted_run_exits_130_and_frees_the_runs_root(first_run, project):
    folder, config = project
    run = _start(folder, "--config", config, "--verbose", "--no-cache", name="verbose")
    _wait_for(lambda: "ImageExampleGen" in (folder / "verbose.out").read_text(), timeout=300)
    run.send_signal(signal.SIGINT)
    code, out, err = _finish(run, folder, name="verbose", timeout=120)
    assert code == 130
    assert re.search(r"^  CuratedSchemaGen +started$", out, re.M)
    assert "INFO:absl:Component ImageExampleGen is running." in err  # what the log takes otherwise
    assert err.rstrip("\n").endswith("fakeface run: interrupted; run it again to resume")
    with runs.hold(str(folder / "runs")):
        pass
