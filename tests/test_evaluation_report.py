"""The evaluation report, blessing and the experiment matrix, on real pipeline runs.

The report's numbers are checked against scikit-learn on the report's own
per-image predictions, and TFMA's sliced metrics against the same numbers:
two independent computations of what a user reads in the report.
"""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
from sklearn import metrics as sk

from fakeface import catalog as catalog_lib
from fakeface import cli, features, sample_data
from fakeface.pipeline import experiments, local_runner, results

pytestmark = pytest.mark.slow


def _report_dir(summary):
    assert summary.report_html, summary
    return os.path.dirname(summary.report_html)


def _predictions(report_dir):
    with open(os.path.join(report_dir, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r[features.LABEL]) for r in rows])
    scores = np.array([float(r["original"]) for r in rows], np.float32)
    return rows, labels, scores


def _metrics(report_dir):
    with open(os.path.join(report_dir, "metrics.json")) as f:
        return json.load(f)["model"]


def test_report_holds_every_source_and_every_slice(pipeline_runs):
    _, first, _ = pipeline_runs
    report_dir = _report_dir(first)
    data = _metrics(report_dir)
    assert {r["source"] for r in data["sources"]} == {s.name for s in sample_data.SOURCES}
    slices = {s["slice"] for s in data["slices"]}
    for name in ("overall", "source=Gen1", "shot=wide", "generator=PGGAN", "label=1",
                 "image_format=JPEG", "resolution_bucket=under-256", "shot=wide, source=Gen2",
                 "label=0, source=FFHQ_Orig"):
        assert name in slices
    page = open(first.report_html, encoding="utf-8").read()
    for source in sample_data.SOURCES:
        assert source.name in page
    assert "data:image/png;base64," in page  # charts are inline: the page is self-contained
    assert "Training curves" in page and "Confusion matrix" in page
    for name in ("sources.csv", "slices.csv", "predictions.csv"):
        assert os.path.getsize(os.path.join(report_dir, name)) > 0


def test_report_numbers_equal_scikit_learn_on_the_same_predictions(pipeline_runs):
    _, first, _ = pipeline_runs
    report_dir = _report_dir(first)
    rows, labels, scores = _predictions(report_dir)
    data = _metrics(report_dir)
    threshold = np.float32(data["threshold"])
    called_fake = scores > threshold
    overall = data["overall"]
    assert overall["auc"] == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-9)
    assert overall["average_precision"] == pytest.approx(sk.average_precision_score(labels, scores), abs=1e-9)
    assert overall["accuracy"] == pytest.approx(sk.accuracy_score(labels, called_fake))
    assert overall["recall"] == pytest.approx(sk.recall_score(labels, called_fake))
    real = labels == features.REAL
    for source_row in data["sources"]:
        members = np.array([r[features.SOURCE] == source_row["source"] for r in rows])
        accuracy = sk.accuracy_score(labels[members], called_fake[members])
        assert source_row["accuracy_original"] == pytest.approx(accuracy)
        if source_row["label"] == "fake":
            pool = members | real
            assert source_row["auc_vs_real"] == pytest.approx(sk.roc_auc_score(labels[pool], scores[pool]))
            assert source_row["average_precision_vs_real"] == pytest.approx(
                sk.average_precision_score(labels[pool], scores[pool]))
        else:
            assert source_row["false_positive_rate"] == pytest.approx(np.mean(called_fake[members]))

    # TFMA, scoring the test split through the serving_examples signature,
    # agrees with the report on the same images. Its AUC is computed over
    # 10,000 thresholds, so scores closer than 1e-4 count as tied: the same
    # AUC as scikit-learn's on scores in those buckets. Its AP also
    # interpolates precision between them (Davis and Goadrich), which on a few
    # dozen images moves it by a few hundredths from the step-wise definition.
    tfma = {s["slice"]: s for s in data["slices"]}
    assert tfma["overall"]["example_count"] == len(rows)
    assert tfma["overall"]["binary_accuracy"] == pytest.approx(overall["accuracy"])
    assert tfma["overall"]["auc"] == pytest.approx(sk.roc_auc_score(labels, np.floor(scores * 10000)), abs=1e-3)
    assert tfma["overall"]["average_precision"] == pytest.approx(overall["average_precision"], abs=5e-2)
    for source_row in data["sources"]:
        by_source = tfma[f"source={source_row['source']}"]
        assert by_source["binary_accuracy"] == pytest.approx(source_row["accuracy_original"])
        if source_row["label"] == "real":
            assert tfma[f"label=0, source={source_row['source']}"]["fall_out"] == pytest.approx(
                source_row["false_positive_rate"])


def test_robustness_and_tta_columns_score_perturbed_copies(pipeline_runs):
    config, first, _ = pipeline_runs
    rows, _, scores = _predictions(_report_dir(first))
    data = _metrics(_report_dir(first))
    assert data["columns"] == ["original", "jpeg", "downscaled", "rotation_tta"]
    for column in ("jpeg", "downscaled", "rotation_tta"):
        perturbed = np.array([float(r[column]) for r in rows], np.float32)
        assert perturbed.shape == scores.shape and np.all((perturbed >= 0) & (perturbed <= 1))
        assert not np.allclose(perturbed, scores)  # each column really scored other pixels
    assert data["settings"]["tta_angles"] == config.evaluator.tta_angles


def test_rotation_tta_is_read_at_a_threshold_calibrated_for_rotation_averaged_scores(pipeline_runs):
    import tensorflow as tf
    from tfx.utils import path_utils

    from fakeface.serving import classify, client

    config, first, _ = pipeline_runs
    data = _metrics(_report_dir(first))
    decisions = data["column_decisions"]
    for column in ("original", "jpeg", "downscaled"):  # what the served model does with such images
        assert decisions[column]["threshold"] == data["threshold"]
    tta = decisions["rotation_tta"]
    assert tta["method"] == "calibrated on the eval split's rotation-averaged scores"
    assert tta["target_fpr"] == config.evaluator.target_fpr

    # The model's own rotation-averaged scores of the eval split: at the TTA
    # threshold at most the target share of its real images is called fake,
    # and one real image more would break the target.
    inputs = results.evaluation_inputs(config.metadata_path_resolved, first.evaluation_uri)
    files = tf.io.gfile.glob(os.path.join(inputs["examples"], "Split-eval", "*"))
    backend = client.InProcessBackend(path_utils.serving_model_path(first.model_uri))
    real_scores = []
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        if feature[features.LABEL].int64_list.value[0] == features.REAL:
            rotated = classify.rotations(feature[features.IMAGE_BYTES].bytes_list.value[0], config.evaluator.tta_angles)
            real_scores.append(np.mean([float(r[features.FAKE_PROBABILITY]) for r in backend.predict(rotated)]))
    real_scores = np.sort(real_scores)[::-1]
    allowed = int(np.floor(config.evaluator.target_fpr * real_scores.size))
    assert np.sum(real_scores > tta["threshold"]) <= allowed
    assert real_scores[allowed] <= tta["threshold"] + 1e-6
    rows, labels, _ = _predictions(_report_dir(first))
    for source_row in data["sources"]:
        members = [r for r in rows if r[features.SOURCE] == source_row["source"]]
        called_fake = np.array([float(r["rotation_tta"]) > tta["threshold"] for r in members])
        expected = called_fake.mean() if source_row["label"] == "fake" else 1 - called_fake.mean()
        assert source_row["accuracy_rotation_tta"] == pytest.approx(expected)


def test_a_model_that_fails_a_check_is_not_pushed_and_the_report_names_the_slice(pipeline_runs, tmp_path,
                                                                                 capsys):
    config, first, _ = pipeline_runs
    strict = dataclasses.replace(config, evaluator=dataclasses.replace(
        # A threshold that lets half the eval split's real images through,
        # against a limit of none on any real source, however few its images.
        config.evaluator, target_fpr=0.5, max_real_source_fpr=0.0, min_real_images=1, baseline="none"))
    versions_before = sorted(os.listdir(config.serving_model_dir_path))
    refused = results.run_summary(config.metadata_path_resolved, config.pipeline_name, local_runner.run(strict))
    assert refused.executions["Evaluator"] == "COMPLETE"
    assert refused.blessed is False and not refused.pushed
    assert sorted(os.listdir(config.serving_model_dir_path)) == versions_before
    assert refused.not_blessed_because
    assert all(reason.startswith("checked_fall_out is ") and "on slice label=0" in reason and "at most 0" in reason
               for reason in refused.not_blessed_because), refused.not_blessed_because
    assert any("on slice label=0, source=" in reason for reason in refused.not_blessed_because)
    assert "NOT BLESSED" in open(refused.report_html, encoding="utf-8").read()

    # `fakeface report` renders the same from the run's records, and puts the
    # refused model beside the first one on the same test images.
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"runs_root: {config.runs_root}\n")
    out = tmp_path / "compare"
    assert cli.main(["report", "latest", str(out), "--config", str(config_file),
                     "--compare", first.evaluation_uri]) == 0
    printed = capsys.readouterr().out
    assert "not blessed: checked_fall_out" in printed
    compared = json.loads((out / "metrics.json").read_text())
    assert compared["model"]["blessed"] is False and compared["compared_with"]["blessed"] is True
    assert compared["model"]["model_uri"] == refused.model_uri
    assert compared["compared_with"]["model_uri"] == first.model_uri
    assert "Side by side" in (out / "report.html").read_text()


def test_experiment_matrix_trains_on_subsets_and_tests_on_every_source(pipeline_runs, tmp_path):
    config, _, _ = pipeline_runs
    offered = catalog_lib.load(config.catalog_path).experiments
    chosen = {name: offered[name] for name in ("v1", "v2")}
    out = tmp_path / "matrix"
    rows = experiments.run(config, chosen, str(out))
    by_source = {r["source"]: r for r in rows}
    assert set(by_source) == {s.name for s in sample_data.SOURCES} | {"average"}
    assert by_source["Gen1"]["v1_trained_on"] and not by_source["Gen1"]["v2_trained_on"]
    assert all(0.0 <= by_source[s.name][n] <= 1.0 for s in sample_data.SOURCES for n in chosen)
    with open(out / "matrix.csv") as f:
        assert next(csv.reader(f)) == ["source", "label", "examples", "v1", "v2"]
    assert "(trained on)" in (out / "matrix.md").read_text()
    for name in chosen:
        assert (out / name / "report.html").is_file()
    # Each experiment trained a model of its own.
    with open(out / "v1" / "metrics.json") as f, open(out / "v2" / "metrics.json") as g:
        assert json.load(f)["model"]["model_uri"] != json.load(g)["model"]["model_uri"]
    # The production pipeline's records are untouched by the experiments.
    latest = results.latest_run(config.metadata_path_resolved, config.pipeline_name)
    assert latest.run_id != results.latest_run(
        config.metadata_path_resolved, config.pipeline_name + experiments.PIPELINE_SUFFIX).run_id


def test_experiments_refuse_unknown_sources_or_one_class(pipeline_runs, tmp_path):
    config, _, _ = pipeline_runs
    with pytest.raises(catalog_lib.CatalogError, match=r"\['NoSuchSet'\] are not datasets of the catalog"):
        experiments.run(config, {"bad": ("Gen1", "NoSuchSet")}, str(tmp_path))
    with pytest.raises(catalog_lib.CatalogError, match="real and fake"):
        experiments.run(config, {"fakes": ("Gen1", "Gen2")}, str(tmp_path))


def test_leave_one_generator_out_drops_exactly_that_generators_fakes(tmp_path):
    catalog = catalog_lib.load(sample_data.generate(str(tmp_path), per_source=1, size=16))
    held_out = experiments.leave_one_generator_out(catalog)
    assert set(held_out) == {"without-PGGAN", "without-StyleGAN", "without-StyleGAN2"}
    assert set(held_out["without-StyleGAN"]) == {
        "Gen1", "Gen2", "PGGAN", "FFHQ_Orig", "FFHQ_Wide", "CelebA"}
