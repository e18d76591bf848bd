"""The evaluation report's tables and page, and the experiment matrix, on hand-made predictions: no model, no TFMA."""

import contextlib
import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from fakeface import features
from fakeface.components.evaluation_report import content, page, report, scoring, tables
from fakeface.pipeline import experiments


def _prediction(source, label, score, generator="g"):
    return {features.SOURCE: source, features.LABEL: label, features.GENERATOR: generator,
            scoring.ORIGINAL: score, scoring.JPEG: score / 2}


PREDICTIONS = [
    _prediction("RealA", 0, 0.1), _prediction("RealA", 0, 0.6), _prediction("RealB", 0, 0.2),
    _prediction("FakeA", 1, 0.9), _prediction("FakeA", 1, 0.3), _prediction("FakeB", 1, 0.8),
]


def test_source_rows_give_detection_rates_false_positive_rates_and_auc_against_all_real():
    rows = {r["source"]: r for r in tables.source_rows(PREDICTIONS, {scoring.ORIGINAL: 0.5, scoring.JPEG: 0.5})}
    assert rows["RealA"]["false_positive_rate"] == pytest.approx(0.5)
    assert rows["RealB"]["false_positive_rate"] == 0.0
    assert rows["FakeA"]["detection_rate"] == pytest.approx(0.5)
    assert rows["FakeB"]["detection_rate"] == 1.0
    # FakeA (0.9, 0.3) against every real image (0.1, 0.6, 0.2): 5 of 6 pairs ranked right.
    assert rows["FakeA"]["auc_vs_real"] == pytest.approx(5 / 6)
    assert rows["FakeB"]["auc_vs_real"] == 1.0
    assert "auc_vs_real" not in rows["RealA"]
    # Re-compressed scores are halved here: no fake clears the threshold any more.
    assert rows["FakeB"]["accuracy_jpeg"] == 0.0 and rows["RealA"]["accuracy_jpeg"] == 1.0


def test_overall_metrics_include_the_confusion_matrix_at_the_threshold():
    overall = tables.overall_metrics(PREDICTIONS, 0.5)
    assert (overall["true_positives"], overall["false_positives"], overall["false_negatives"],
            overall["true_negatives"]) == (2, 1, 1, 2)
    assert overall["auc"] == pytest.approx(8 / 9)
    assert sum(overall["calibration"]["counts"]) == len(PREDICTIONS)


def _png(width, height):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def test_perturbed_copies_are_what_they_claim():
    original = _png(40, 30)
    half = Image.open(io.BytesIO(scoring.downscale(original, 0.5)))
    assert (half.format, half.size) == ("PNG", (20, 15))
    recompressed = Image.open(io.BytesIO(scoring.recompress(original, 70)))
    assert recompressed.format == "JPEG" and recompressed.size == (40, 30)
    assert scoring.recompress(original, 70) == scoring.recompress(original, 70)


def _report(blessed, failures=()):
    return content.Report(
        model_uri="/m/1", model_version="20260101T000000Z", threshold=0.5,
        decision={"method": "calibrated on the eval split", "target_fpr": 0.05}, blessed=blessed,
        failures=list(failures), slices=[{"slice": "overall", "auc": 0.8}], predictions=PREDICTIONS,
        columns=[scoring.ORIGINAL, scoring.JPEG],
        column_decisions={c: {"threshold": 0.5, "method": "the model's threshold"} for c in (scoring.ORIGINAL, scoring.JPEG)},
        settings={"robustness_jpeg_quality": [65, 95]})


def test_html_names_the_failed_check_and_compares_two_models(tmp_path):
    refused = _report(False, ["fall_out is 0.5000 on slice label=0, source=RealA: must be at most 0.1"])
    html = page.render_html(refused, compare=_report(True))
    assert "NOT BLESSED" in html and "label=0, source=RealA" in html
    assert "Side by side" in html and "BLESSED" in html
    path = report.write(refused, str(tmp_path / "out"))
    assert path.endswith("report.html")
    for name in ("metrics.json", "sources.csv", "slices.csv", "predictions.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_matrix_rows_are_sources_and_columns_are_experiments(tmp_path):
    def summary(accuracies):
        return {"sources": [{"source": s, "label": "fake" if s.startswith("Fake") else "real",
                             "examples": 2, "accuracy_original": a} for s, a in accuracies.items()]}

    summaries = {"v1": summary({"FakeA": 1.0, "RealA": 0.5}), "v2": summary({"FakeA": 0.0, "RealA": 1.0})}
    rows = experiments.matrix_rows(summaries, {"v1": ("FakeA", "RealA"), "v2": ("RealA",)})
    by_source = {r["source"]: r for r in rows}
    assert by_source["FakeA"]["v1"] == 1.0 and by_source["FakeA"]["v2"] == 0.0
    assert by_source["FakeA"]["v1_trained_on"] and not by_source["FakeA"]["v2_trained_on"]
    assert by_source["average"]["v1"] == pytest.approx(0.75)
    experiments.write_matrix(rows, ["v1", "v2"], str(tmp_path))
    table = (tmp_path / "matrix.md").read_text()
    assert "| FakeA | fake | 100.0% (trained on) | 0.0% |" in table
    page_html = (tmp_path / "matrix.html").read_text()
    assert '<a href="v1/report.html">100.0% (trained on)</a>' in page_html
    assert '<a href="v2/report.html">0.0%</a>' in page_html
    assert not math.isnan(by_source["average"]["v2"])


def test_the_report_names_the_version_tf_serving_serves_the_model_under(tmp_path):
    import dataclasses
    import json

    for version, trained in (("1795000000", "20260101T000000Z"), ("1795000100", "20260102T000000Z")):
        (tmp_path / version / "assets.extra").mkdir(parents=True)
        (tmp_path / version / "assets.extra" / "training.json").write_text(json.dumps({"model_version": trained}))
    (tmp_path / "1795000200").mkdir()  # a version still being copied
    assert report.served_version(str(tmp_path), "20260101T000000Z") == "1795000000"
    assert report.served_version(str(tmp_path), "20260103T000000Z") == ""
    assert report.served_version(str(tmp_path / "nothing"), "20260101T000000Z") == ""

    served = dataclasses.replace(_report(True), served_version="1795000000")
    assert "served by TF Serving as version <b>1795000000</b>" in page.render_html(served)
    assert "not served when this report was written" in page.render_html(_report(True))
    assert report.summary(served)["served_version"] == "1795000000"


# The last commit whose report numbers came from hand-written ROC, AUC and
# average-precision code, before scikit-learn computed them.
HAND_WRITTEN_METRICS_COMMIT = "3e4d983"


def _module_at(commit, path, name, replacing=None):
    """The module at `path` as it was at `commit`; `replacing` stands in for fakeface modules it imports."""
    import subprocess
    import sys
    import types
    from unittest import mock

    import fakeface

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        source = subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"needs the git history of {commit}: {e}")
    module = types.ModuleType(name)
    replacing = replacing or {}
    with mock.patch.dict(sys.modules, {f"fakeface.{k}": v for k, v in replacing.items()}), \
            mock.patch.multiple(fakeface, **replacing) if replacing else contextlib.nullcontext():
        exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)  # noqa: S102
    return module


def _random_predictions(seed):
    """Test-split predictions of several real and fake sources, with tied scores, in every column."""
    rng = np.random.default_rng(seed)
    rows = []
    for source, label, n in (("RealA", 0, 40), ("RealB", 0, 7), ("FakeA", 1, 30), ("FakeB", 1, 12)):
        for _ in range(n):
            score = float(np.round(np.clip(rng.normal(0.3 + 0.4 * label, 0.2), 0, 1), 2))
            row = {features.SOURCE: source, features.LABEL: label, features.GENERATOR: "g" + source}
            for column in (scoring.ORIGINAL, scoring.JPEG, scoring.DOWNSCALED, scoring.TTA):
                row[column] = score if column == scoring.ORIGINAL else float(np.clip(score + rng.normal(0, 0.1), 0, 1))
            rows.append(row)
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_report_numbers_are_those_of_the_hand_written_metrics_they_replaced(seed):
    old_metrics = _module_at(HAND_WRITTEN_METRICS_COMMIT, "fakeface/metrics.py", "old_metrics")
    old_tables = _module_at(HAND_WRITTEN_METRICS_COMMIT, "components/evaluation_report/tables.py", "old_tables",
                            {"metrics": old_metrics})
    predictions = _random_predictions(seed)
    columns = [scoring.ORIGINAL, scoring.JPEG, scoring.DOWNSCALED, scoring.TTA]
    threshold = 0.45

    def numbers(sources, overall):
        return json.loads(json.dumps(report._jsonable({"sources": sources, "overall": overall})))

    before = numbers(old_tables.source_rows(predictions, threshold, columns, 20),
                     old_tables.overall_metrics(predictions, threshold))
    after = numbers(tables.source_rows(predictions, {c: threshold for c in columns}, 20),
                    tables.overall_metrics(predictions, threshold))
    _assert_same_numbers(after, before)


def _assert_same_numbers(after, before, where="report"):
    assert type(after) is type(before), where
    if isinstance(before, dict):
        assert set(after) == set(before), where
        for key in before:
            _assert_same_numbers(after[key], before[key], f"{where}.{key}")
    elif isinstance(before, list):
        assert len(after) == len(before), where
        for index, (a, b) in enumerate(zip(after, before)):
            _assert_same_numbers(a, b, f"{where}[{index}]")
    elif isinstance(before, float):
        assert after == pytest.approx(before, abs=1e-12), where
    else:
        assert after == before, where
