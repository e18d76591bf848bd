"""The `fakeface` command's argument handling and error messages (no pipeline runs here)."""

import argparse
import io
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from fakeface import cli, sample_data
from fakeface.cli.output import StepLines


def test_sample_data_writes_a_catalog_and_reports_it(tmp_path, capsys):
    out = tmp_path / "samples"
    assert cli.main(["sample-data", str(out), "--per-source", "2", "--size", "32", "--seed", "5"]) == 0
    assert "Wrote 16 synthetic images (32 px, seed 5)" in capsys.readouterr().out
    assert (out / "catalog.yaml").is_file()
    assert len(list(out.glob("*/*.jpg"))) == 2 * len(sample_data.SOURCES)


def test_sample_data_refuses_a_bad_size_with_a_clear_message(tmp_path, capsys):
    assert cli.main(["sample-data", str(tmp_path / "x"), "--size", "15"]) == 2
    assert "error: image size must be an even number" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--catalog", "/nonexistent/catalog.yaml"], "/nonexistent/catalog.yaml: catalog file not found"),
    (["--config", "/nonexistent/config.yaml"], "/nonexistent/config.yaml: config file not found"),
])
def test_run_fails_fast_naming_the_missing_file(args, message, capsys):
    assert cli.main(["run", *args]) == 2
    assert message in capsys.readouterr().err


def test_run_names_the_bad_config_key(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("trainer:\n  epoch: 3\n")
    assert cli.main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "epoch" in err


def test_schema_check_passes_on_the_checked_in_schema(capsys):
    assert cli.main(["schema", "--check"]) == 0


def test_console_script_sets_legacy_keras_before_tensorflow_loads():
    """The installed `fakeface` entry point must select Keras 2 for TFX and hub."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = ("import fakeface.cli, os, sys; "
            "assert 'tensorflow' not in sys.modules; print(os.environ['TF_USE_LEGACY_KERAS'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def _two_class_catalog(tmp_path, fake_files=1):
    """A catalog of two local datasets, the fake one holding `fake_files` files."""
    for name, count in (("real", 1), ("fake", fake_files)):
        (tmp_path / name).mkdir()
        for index in range(count):
            (tmp_path / name / f"{index}.jpg").write_bytes(b"x")
    path = tmp_path / "catalog.yaml"
    path.write_text("datasets:\n"
                    "  - {name: R, location: real, label: real, generator: camera, shot: close-up}\n"
                    "  - {name: F, location: fake, label: fake, generator: G, shot: close-up}\n")
    return str(path)


def _config(tmp_path, text=""):
    path = tmp_path / "config.yaml"
    path.write_text(f"runs_root: {tmp_path / 'runs'}\n" + text)
    return str(path)


def test_an_empty_dataset_is_reported_before_anything_heavy_is_imported(tmp_path):
    catalog = _two_class_catalog(tmp_path, fake_files=0)
    code = ("import sys; from fakeface import cli; code = cli.main(sys.argv[1:]); "
            "heavy = sorted(m for m in ('tensorflow', 'tfx', 'apache_beam', 'ml_metadata') if m in sys.modules); "
            "print('heavy:', heavy); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "run", "--catalog", catalog, "--config", _config(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == "heavy: []"
    assert done.stderr.strip() == f"fakeface run: error: {catalog}: dataset 'F' has no files at {tmp_path / 'fake'}"
    assert not (tmp_path / "runs").exists()  # nothing started, not even the lock


def test_run_refuses_training_sources_the_catalog_lacks(tmp_path, capsys):
    config = _config(tmp_path, "trainer: {train_sources: [R, Q]}\n")
    assert cli.main(["run", "--catalog", _two_class_catalog(tmp_path), "--config", config]) == 2
    assert f"{config}: trainer.train_sources: ['Q'] are not datasets of the catalog" in capsys.readouterr().err


def test_run_names_the_sample_data_command_when_there_is_no_catalog(tmp_path, capsys):
    assert cli.main(["run", "--config", _config(tmp_path)]) == 2
    assert f"fakeface sample-data {tmp_path / 'runs' / 'sample_data'}" in capsys.readouterr().err


def test_a_run_is_refused_while_another_holds_the_runs_root(tmp_path, capsys):
    from fakeface.pipeline import runs

    config = _config(tmp_path)
    with runs.hold(str(tmp_path / "runs"), "fakeface experiments"):
        assert cli.main(["run", "--catalog", _two_class_catalog(tmp_path), "--config", config]) == 1
    err = capsys.readouterr().err
    assert f"another run is using this runs_root: fakeface experiments, pid {os.getpid()} on host " in err
    assert ", started 20" in err and str(tmp_path / "runs" / "run.lock") in err


def test_a_runs_root_that_cannot_be_made_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "runs").write_text("a file, not a folder")
    assert cli.main(["run", "--catalog", _two_class_catalog(tmp_path), "--config", _config(tmp_path)]) == 2
    assert f"fakeface run: error: {tmp_path / 'runs'}: cannot hold the runs_root's lock" in capsys.readouterr().err


def test_a_lock_whose_process_is_gone_does_not_block(tmp_path):
    from fakeface.pipeline import runs

    root = str(tmp_path / "runs")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from fakeface.pipeline import runs\n"
        f"with runs.hold({root!r}):\n    print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(runs.RunsRootBusy, match=f"pid {holder.pid} on host"):
        with runs.hold(root):
            pass
    holder.kill()  # no chance to clean up: its details stay in the file
    holder.wait()
    assert f'"pid": {holder.pid}' in (tmp_path / "runs" / "run.lock").read_text()
    with runs.hold(root) as path:
        assert f'"pid": {os.getpid()}' in open(path).read()


@pytest.mark.parametrize("argv, message", [
    (["sample-data", "{tmp}/x", "--per-source", "0"], "per_source must be at least 1"),
    (["ingest", "{tmp}/missing.yaml", "{tmp}/out"], "missing.yaml: catalog file not found"),
    (["report", "latest", "{tmp}/out", "--config", "{config}"], "metadata.sqlite: no ML Metadata store"),
    (["experiments", "{tmp}/out", "--config", "{config}"], "{tmp}/runs/sample_data/catalog.yaml: catalog file not found"),
    (["compile", "{tmp}/spec.yaml", "--config", "{bad_config}"], "trainer.backbone: must be one of"),
    (["run-compiled", "{tmp}/missing.yaml"], "missing.yaml: cannot read a compiled pipeline"),
    (["schedule", "list", "--config", "{bad_config}"], "trainer.backbone: must be one of"),
    (["predict", "--rest", "http://127.0.0.1:9", "{tmp}/missing.jpg"], "missing.jpg: no such file or folder"),
    (["classify", "{tmp}", "{tmp}/out", "--rest", "http://127.0.0.1:9", "--batch-size", "0"],
     "--batch-size must be at least 1"),
])
def test_bad_usage_config_or_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "bad").mkdir()
    paths = {"tmp": tmp_path, "config": _config(tmp_path),
             "bad_config": _config(tmp_path / "bad", "trainer: {backbone: x}\n")}
    code = cli.main([arg.format(**paths) for arg in argv])
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith(f"fakeface {argv[0]}: error: ") and message.format(**paths) in err


def test_experiments_run_what_the_catalog_names_and_refuse_what_it_lacks(tmp_path, capsys):
    catalog = _two_class_catalog(tmp_path)
    config = _config(tmp_path, f"catalog: {catalog}\n")
    assert cli.main(["experiments", str(tmp_path / "out"), "--config", config]) == 2
    assert "no experiments to run" in capsys.readouterr().err
    with open(catalog, "a") as f:
        f.write("experiments:\n  both: [R, F]\n")
    assert cli.main(["experiments", str(tmp_path / "out"), "--config", config, "--only", "both,v1"]) == 2
    assert f"unknown experiments ['v1']; {catalog} gives ['both']" in capsys.readouterr().err
    with open(catalog, "a") as f:
        f.write("  more: [R, F, Gen9]\n")
    assert cli.main(["experiments", str(tmp_path / "out"), "--config", config]) == 2
    assert f"{catalog}: experiment 'more': ['Gen9'] are not datasets of the catalog" in capsys.readouterr().err


def test_usage_the_parser_refuses_exits_2():
    with pytest.raises(SystemExit) as e:
        cli.main(["schema", "--no-such-flag"])
    assert e.value.code == 2


def test_an_unreachable_server_is_the_work_failing_exit_1(tmp_path, capsys):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    assert cli.main(["predict", "--rest", "http://127.0.0.1:9", "--retries", "0", str(image)]) == 1
    assert "fakeface predict: error: TF Serving REST at http://127.0.0.1:9" in capsys.readouterr().err


def test_an_interrupted_command_exits_130(tmp_path):
    out = tmp_path / "samples"
    command = subprocess.Popen([sys.executable, "-m", "fakeface.cli", "sample-data", str(out),
                                "--per-source", "100000", "--size", "16"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("*/*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.1)
    command.send_signal(signal.SIGINT)
    _, err = command.communicate(timeout=60)
    assert command.returncode == 130, err
    assert err.strip() == "fakeface sample-data: interrupted; run it again to resume"


def test_an_interrupt_that_beam_re_raised_inside_a_step_exits_130(capsys):
    def step(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            # What Beam's DoFnRunner does with an exception it cannot re-create.
            raise RuntimeError("KeyboardInterrupt [while running 'Ingest/Inspect']")  # noqa: B904

    assert cli.dispatch(argparse.Namespace(command="ingest", func=step)) == 130
    assert capsys.readouterr().err.strip() == "fakeface ingest: interrupted; run it again to resume"

    def fault(args):
        raise RuntimeError("a fault")

    with pytest.raises(RuntimeError, match="a fault"):
        cli.dispatch(argparse.Namespace(command="ingest", func=fault))


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _show_steps(out, inline):
    steps = StepLines(out, inline=inline)
    steps.start("Transform")
    steps.end("Transform", "cached")
    steps.start("Trainer")
    steps.epoch(1, 2, {"loss": 0.5, "val_auc": 0.75, "accuracy": 0.6})
    steps.epoch(2, 2, {"loss": 0.25, "val_auc": 0.875})
    steps.end("Trainer", "complete")
    steps.start("Evaluator")
    steps.close()  # interrupted
    return out.getvalue()


def test_step_lines_off_a_terminal_hold_one_line_per_step_with_its_epochs():
    assert re.fullmatch(r"  Transform +cached +\d+\.\d s\n"
                        r"  Trainer +epochs 1 2   complete +\d+\.\d s\n"
                        r"  Evaluator +\n", _show_steps(io.StringIO(), inline=True))


def test_step_lines_on_a_terminal_show_the_latest_epoch_in_place():
    shown = _show_steps(_Terminal(), inline=True)
    assert "\r\033[K  Trainer               epoch 2/2  loss 0.250  val_auc 0.875" in shown
    # What the terminal ends up showing: each line's last rewrite.
    assert [line.split("\r\033[K")[-1] for line in shown.split("\n")][:2] == [
        re.search(r"  Transform +cached +\d+\.\d s", shown).group(0),
        re.search(r"  Trainer +complete +\d+\.\d s", shown).group(0)]


def test_step_lines_among_other_output_take_a_line_per_event():
    assert re.fullmatch(r"  Transform +started\n  Transform +cached +\d+\.\d s\n"
                        r"  Trainer +started\n  Trainer +complete +\d+\.\d s\n  Evaluator +started\n",
                        _show_steps(io.StringIO(), inline=False))
