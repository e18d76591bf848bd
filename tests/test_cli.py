"""The `fakeface` command's argument handling and error messages (no pipeline runs here)."""

import os
import subprocess
import sys

import pytest

from fakeface import cli, sample_data


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
