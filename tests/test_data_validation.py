"""The data validation gate: TFDV's anomalies read back, classified by severity, and the run stopped or warned.

The first tests validate statistics of examples generated here with TFDV
itself, as ExampleValidator and DistributionValidator do, and read the
anomalies back through the gate. The pipeline tests run the gate where it
stands: after ExampleValidator and DistributionValidator, before Transform.
"""

import json
import os
import re
import shutil
import types

import markupsafe
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import yaml
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from fakeface import cli, features, images, schemas
from fakeface.components.data_validation import anomalies, executor
from fakeface.pipeline import config as config_lib
from fakeface.pipeline import results

SCHEMA = io_utils.SchemaReader().read(schemas.SCHEMA_PATH)


def _example(label, image_format, source):
    strings = {features.IMAGE_BYTES: b"\xff\xd8", features.SOURCE: source, features.GENERATOR: "g",
               features.SHOT: features.CLOSE_UP, features.CONTENT_HASH: "h", features.PERCEPTUAL_HASH: "p",
               features.IMAGE_FORMAT: image_format, features.RESOLUTION_BUCKET: "under-256",
               features.RELATIVE_PATH: "a.jpg"}
    feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v if isinstance(v, bytes) else v.encode()])) for name, v in strings.items()}
    for name, value in ((features.LABEL, label), (features.WIDTH, 32), (features.HEIGHT, 32),
                        (features.JPEG_QUALITY, 90)):
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _statistics(rows):
    """TFDV's statistics of these (label, format, source) examples, computed with the schema as StatisticsGen does."""
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch([_example(*row) for row in rows])
    return stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions(schema=SCHEMA))


def _anomalies_artifact(tmp_path, name, by_split, prefix="Split-"):
    """An ExampleAnomalies artifact as the validators write it: SchemaDiff.pb per split (pair)."""
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path / name)
    for split, found in by_split.items():
        os.makedirs(os.path.join(artifact.uri, prefix + split))
        with open(os.path.join(artifact.uri, prefix + split, "SchemaDiff.pb"), "wb") as f:
            f.write(found.SerializeToString())
    artifact.split_names = artifact_utils.encode_split_names(list(by_split))
    return artifact


def _mixed_rows(rng, n, fake_share, sources, bad_label=0, bad_format=0):
    rows = []
    for i in range(n):
        label = int(rng.uniform() < fake_share)
        rows.append((label, "JPEG", sources[label][int(rng.integers(len(sources[label])))]))
    rows += [(2, "JPEG", "Odd")] * bad_label + [(1, "WEBP", "Webp")] * bad_format
    return rows


SOURCES = {0: ["RealA", "RealB"], 1: ["FakeA", "FakeB"]}


@pytest.mark.parametrize("seed", [0, 1])
def test_a_label_or_format_outside_the_schema_is_a_blocking_line_naming_feature_expected_and_found(tmp_path, seed):
    rng = np.random.default_rng(seed)
    by_split = {split: tfdv.validate_statistics(_statistics(_mixed_rows(
        rng, 40, 0.5, SOURCES, bad_label=int(rng.integers(1, 5)), bad_format=int(rng.integers(1, 5)))), SCHEMA)
        for split in ("train", "eval")}
    found = anomalies.merged(anomalies.read(_anomalies_artifact(tmp_path, "schema", by_split),
                                            anomalies.SCHEMA, SCHEMA, "WARNING"))
    stop, warn = anomalies.blocking(found, ["ERROR"])
    assert not warn
    lines = {a.feature: a.line() for a in stop}
    assert set(lines) == {features.LABEL, features.IMAGE_FORMAT}
    assert lines[features.LABEL].startswith("label: expected an integer from 0 to 1, in every example; found ")
    assert "2" in lines[features.LABEL] and "(schema, train, eval splits, ERROR)" in lines[features.LABEL]
    assert lines[features.IMAGE_FORMAT].startswith(
        f"image_format: expected one of {', '.join(images.ACCEPTED_FORMATS)}, in every example; found ")
    assert "WEBP" in lines[features.IMAGE_FORMAT]
    assert all("\n" not in line for line in lines.values())
    # The same anomalies only warn when the config lets ERROR through.
    stop, warn = anomalies.blocking(found, [])
    assert not stop and {a.feature for a in warn} == {features.LABEL, features.IMAGE_FORMAT}


def test_a_conforming_split_has_no_anomaly(tmp_path):
    rows = _mixed_rows(np.random.default_rng(2), 30, 0.5, SOURCES)
    found = anomalies.read(_anomalies_artifact(tmp_path, "schema", {
        "train": tfdv.validate_statistics(_statistics(rows), SCHEMA)}),
        anomalies.SCHEMA, SCHEMA, "WARNING")
    assert found == []


def _drift(tmp_path, served_rows, current_rows, thresholds):
    """Drift anomalies as TFX's DistributionValidator writes them (its executor, on TFDV statistics)."""
    from tfx.components.distribution_validator import executor as tfx_executor

    from fakeface.components.distribution_validator.component import SPLIT_PAIRS, drift_config

    def statistics_artifact(name, rows):
        artifact = standard_artifacts.ExampleStatistics()
        artifact.uri = str(tmp_path / name)
        os.makedirs(os.path.join(artifact.uri, "Split-train"))
        with open(os.path.join(artifact.uri, "Split-train", "FeatureStats.pb"), "wb") as f:
            f.write(_statistics(rows).SerializeToString())
        artifact.split_names = artifact_utils.encode_split_names(["train"])
        return artifact

    output = standard_artifacts.ExampleAnomalies()
    output.uri = str(tmp_path / "drift")
    tfx_executor.Executor().Do(
        {"statistics": [statistics_artifact("current", current_rows)],
         "baseline_statistics": [statistics_artifact("served", served_rows)]},
        {"anomalies": [output]},
        {"distribution_validator_config": drift_config(thresholds), "include_split_pairs": json.dumps(SPLIT_PAIRS)})
    return output


@pytest.mark.parametrize("severity", ["WARNING", "ERROR"])
def test_drift_of_source_and_label_beyond_the_l_infinity_threshold_warns_or_stops_as_configured(tmp_path, severity):
    rng = np.random.default_rng(3)
    served = _mixed_rows(rng, 200, 0.5, SOURCES)
    # A third real source appears and fakes become the larger share.
    drifted = _mixed_rows(rng, 200, 0.75, {0: ["RealA", "RealB", "RealC"], 1: ["FakeA", "FakeB"]})
    thresholds = {features.SOURCE: 0.1, features.LABEL: 0.1}
    found = anomalies.read(_drift(tmp_path, served, drifted, thresholds), anomalies.DRIFT, SCHEMA, severity)
    lines = {a.feature: a.line() for a in found}
    assert set(lines) == {features.SOURCE, features.LABEL}
    assert lines[features.SOURCE].split("most of all in the share of ")[1].split(" ")[0] in {
        "RealA", "RealB", "RealC", "FakeA", "FakeB"}
    for line in lines.values():
        distance = float(line.split("; found ")[1].split(",")[0])
        assert 0.1 < distance <= 1
        assert line.startswith(f"{line.split(':')[0]}: expected an L-infinity distance of at most 0.1 "
                               "from the served model's training data; found ")
        assert line.endswith(f"(drift, train split, {severity})")
    stop, warn = anomalies.blocking(found, ["ERROR"])
    assert (len(stop), len(warn)) == ((0, 2) if severity == "WARNING" else (2, 0))


def test_the_same_mix_as_the_served_data_does_not_drift(tmp_path):
    rng = np.random.default_rng(4)
    served, current = _mixed_rows(rng, 400, 0.5, SOURCES), _mixed_rows(rng, 400, 0.5, SOURCES)
    found = anomalies.read(_drift(tmp_path, served, current, {features.SOURCE: 0.1, features.LABEL: 0.1}),
                           anomalies.DRIFT, SCHEMA, "ERROR")
    assert found == []


def _gate(tmp_path, rows, fail_on, executor_output_uri=None):
    """The gate's executor on the schema anomalies of these examples, as a runner calls it."""
    from tfx.dsl.components.base import base_executor

    from fakeface.components.data_validation.component import DataValidationArtifact

    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    io_utils.copy_file(schemas.SCHEMA_PATH, os.path.join(schema.uri, "schema.pbtxt"))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")  # without an ingestion report: no page is re-rendered
    output = DataValidationArtifact()
    output.uri = str(tmp_path / "validation")
    schema_anomalies = _anomalies_artifact(tmp_path, "schema_anomalies", {
        "train": tfdv.validate_statistics(_statistics(rows), SCHEMA)})
    context = base_executor.BaseExecutor.Context(executor_output_uri=executor_output_uri)
    result = executor.Executor(context).Do(
        {"examples": [examples], "schema": [schema], "schema_anomalies": [schema_anomalies]},
        {"validation": [output]}, {"fail_on": json.dumps(fail_on), "drift_severity": "WARNING"})
    return result, output


def test_blocking_anomalies_fail_the_step_on_every_runner(tmp_path):
    from google.rpc import code_pb2

    rows = _mixed_rows(np.random.default_rng(5), 20, 0.5, SOURCES, bad_format=3)
    # TFX's launcher (local runs) reads the result, records it in ML Metadata and stops the run.
    result, _ = _gate(tmp_path / "local", rows, ["ERROR"], executor_output_uri=str(tmp_path / "executor_output"))
    assert result.execution_result.code == code_pb2.FAILED_PRECONDITION
    assert result.execution_result.result_message.startswith("image_format: expected one of ")
    # KFP's entrypoint ignores results: the task fails by raising.
    with pytest.raises(executor.DataValidationFailed, match=r"^image_format: expected one of .* found .*WEBP"):
        _gate(tmp_path / "kfp", rows, ["ERROR"])


def test_anomalies_that_do_not_block_are_recorded_as_warnings(tmp_path):
    rows = _mixed_rows(np.random.default_rng(6), 20, 0.5, SOURCES, bad_label=2)
    result, output = _gate(tmp_path, rows, ["WARNING"], executor_output_uri=str(tmp_path / "executor_output"))
    assert result is None
    warnings = output.get_string_custom_property(executor.WARNINGS_PROPERTY).split("\n")
    assert len(warnings) == 1 and warnings[0].startswith("label: expected an integer from 0 to 1")
    validation = executor.read_validation(output.uri)
    assert validation["warnings"] == warnings and validation["blocking"] == []
    assert validation["fail_on"] == ["WARNING"]


# ---------------------------------------------------------------- in the pipeline


@pytest.fixture(scope="module")
def gate_runs(pipeline_runs, tmp_path_factory):
    """A config for runs of their own beside the shared runs, whose serving folder holds the shared run's model."""
    config, first, _ = pipeline_runs
    root = tmp_path_factory.mktemp("gate")
    serving = root / "serving"
    # The model the shared run pushed, with the statistics of its training data.
    shutil.copytree(os.path.dirname(first.pushed_destination), serving)
    with open(config.catalog_path) as f:
        catalog = yaml.safe_load(f)
    for dataset in catalog["datasets"]:
        dataset["location"] = os.path.join(os.path.dirname(config.catalog_path), dataset["location"])

    def run(name, datasets, validation, capsys):
        """`fakeface run` of a catalog of these datasets; (exit code, stderr, the run's summary)."""
        catalog_path = root / f"{name}.yaml"
        catalog_path.write_text(yaml.safe_dump({"datasets": datasets}))
        overrides = {"pipeline_name": f"fakeface-{name}", "catalog": str(catalog_path),
                     "serving_model_dir": str(serving), "validation": validation}
        merged = config_lib.to_dict(config)
        for key in ("catalog", "pipeline_root", "metadata_path", "serving_model_dir", "pipeline_name"):
            merged.pop(key)
        merged.update(overrides)
        config_path = root / f"{name}.config.yaml"
        config_path.write_text(yaml.safe_dump(merged))
        capsys.readouterr()
        code = cli.main(["run", "--config", str(config_path)])
        summary = results.latest_run(config.metadata_path_resolved, f"fakeface-{name}")
        return code, capsys.readouterr().err, summary

    return types.SimpleNamespace(config=config, catalog=catalog, root=root, serving=serving, run=run)


def _datasets(gate_runs, names):
    """The named datasets, without their groups: a subset breaks the sample data's real-and-fake pairs."""
    return [{k: v for k, v in d.items() if k != "group"} for d in gate_runs.catalog["datasets"] if d["name"] in names]


@pytest.mark.slow
def test_a_catalog_with_a_format_the_schema_does_not_list_stops_before_transform(gate_runs, capsys, monkeypatch):
    # Ingestion that writes a format the schema does not list, as a change to
    # one without the other would: PGGAN's examples say WEBP.
    from fakeface.components.image_example_gen import writing

    to_example = writing.to_example

    def webp_for_pggan(record, dataset, data, content_hash):
        example = to_example(record, dataset, data, content_hash)
        if dataset.name == "PGGAN":
            example.features.feature[features.IMAGE_FORMAT].bytes_list.value[:] = [b"WEBP"]
        return example

    monkeypatch.setattr(writing, "to_example", webp_for_pggan)
    code, err, summary = gate_runs.run("webp", gate_runs.catalog["datasets"], {"drift_thresholds": {}}, capsys)

    assert code == 1 and "Traceback" not in err
    assert summary.executions["DataValidation"] == "FAILED"
    assert "Transform" not in summary.executions and "Trainer" not in summary.executions
    # Recorded in ML Metadata: the summary reads the lines back from the failed execution.
    assert len(summary.validation_blocking) == 1
    line = summary.validation_blocking[0]
    assert line.startswith("image_format: expected one of JPEG, PNG, GIF, BMP, in every example; found ")
    assert "WEBP" in line and re.search(r"\(schema, (train|eval|test)(, (train|eval|test))* splits?, ERROR\)$", line)
    assert "Data validation stopped the run before Transform" in err and line in err


@pytest.mark.slow
def test_drift_from_the_served_models_data_stops_the_run_when_configured(gate_runs, capsys):
    # Three real sources and one fake, where the served model saw three and five.
    datasets = _datasets(gate_runs, {"FFHQ_Orig", "CelebA", "FFHQ_Wide", "Gen1"})
    code, err, summary = gate_runs.run("drift-stops", datasets, {"drift_severity": "ERROR"}, capsys)

    assert code == 1 and "Traceback" not in err
    assert summary.executions["DataValidation"] == "FAILED" and "Transform" not in summary.executions
    by_feature = {line.split(":")[0]: line for line in summary.validation_blocking}
    assert set(by_feature) == {features.SOURCE, features.LABEL}
    for line in by_feature.values():
        assert "expected an L-infinity distance of at most 0.1 from the served model's training data" in line
        assert line.endswith("(drift, train split, ERROR)") and line in err


@pytest.mark.slow
def test_drift_warns_by_default_in_the_summary_and_both_reports_and_the_run_goes_on(gate_runs, capsys):
    datasets = _datasets(gate_runs, {"FFHQ_Orig", "CelebA", "FFHQ_Wide", "Gen1"})
    code, err, summary = gate_runs.run("drift-warns", datasets, {}, capsys)

    assert code == 0, err
    assert summary.executions["DataValidation"] == "COMPLETE" and summary.executions["Transform"] == "COMPLETE"
    assert {line.split(":")[0] for line in summary.validation_warnings} == {features.SOURCE, features.LABEL}
    assert not summary.validation_blocking
    for line in summary.validation_warnings:
        assert f"WARNING: data validation: {line}" in err
    ingestion = open(summary.validation_report, encoding="utf-8").read()
    evaluation_page = open(summary.report_html, encoding="utf-8").read()
    for page_html in (ingestion, evaluation_page):
        for line in summary.validation_warnings:
            assert f'<p class="warn">WARNING: {markupsafe.escape(line)}</p>' in page_html
    assert "<h2>Datasets</h2>" in ingestion  # the ingestion report itself, with the validation in it
    with open(os.path.join(os.path.dirname(summary.report_html), "metrics.json")) as f:
        assert json.load(f)["model"]["validation"]["warnings"] == summary.validation_warnings
