"""Both HTML reports from one set of templates: shared layout and stylesheet, escaping, every section, charts that fit."""

import math
import re

import numpy as np
import pytest

from fakeface import features
from fakeface.components import reporting
from fakeface.components.evaluation_report import content, page, scoring, verdict
from fakeface.pipeline import evaluation

HOSTILE = '<script>alert("x")</script> & <b>'


def _ingestion_report(rng, quarantined=3, hostile=""):
    """An ingestion report dict as render_report() writes it, with `quarantined` files set aside."""
    datasets = {}
    for name, label in ((f"Real{hostile}", "real"), ("FakeA", "fake")):
        ingested = int(rng.integers(5, 50))
        datasets[name] = {"label": label, "found": ingested + quarantined, "ingested": ingested,
                          "duplicates": 0, "quarantined": quarantined,
                          "splits": {"train": ingested - 2, "test": 2}}
    return {
        "catalog": f"/data/catalog{hostile}.yaml", "dry_run": False,
        "options": {"shortcut_warning_accuracy": 0.9, "near_duplicate_bits": 2},
        "datasets": datasets,
        "totals": {k: sum(d[k] for d in datasets.values()) for k in ("found", "ingested", "duplicates", "quarantined")},
        "warnings": [f"SHORTCUT: format alone tells real from fake {hostile}"],
        "shortcut_guard": [{"scope": f"group g{hostile}", "kind": "group", "attribute": "format",
                            "balanced_accuracy": 1.0, "real": {"PNG": 3}, "fake": {f"JPEG{hostile}": 4},
                            "used": [], "remedies": ["ingest.reencode_jpeg_quality"]}],
        "per_source": {"format": {name: {d["label"]: {"PNG": 3}} for name, d in datasets.items()}},
        "label_conflicts": [{"source": "FakeA", "path": f"/data/FakeA/c{hostile}.jpg",
                             "reason": f"label conflict: byte-identical to real Real/c{hostile}.jpg"}],
        "image_modes": {}, "exif_orientation": {},
        "quarantine": [{"source": name, "path": f"/data/{name}/{i}{hostile}.jpg", "reason": f"truncated {hostile}"}
                       for name in datasets for i in range(quarantined)],
        "duplicates": [{"dropped": f"FakeA/copy{hostile}.jpg", "kept": "FakeA/a.jpg", "source": "FakeA",
                        "content_sha256": "0" * 64}],
        "near_duplicates": [{"cluster": "ff00", "files": ["FakeA/a.jpg", f"Real/b{hostile}.png"],
                             "labels": ["fake", "real"]}],
    }


def _evaluation_report(rng, sources=(("RealA", 0), ("FakeA", 1)), slices=None, hostile="", validation=None):
    predictions = []
    for source, label in sources:
        for _ in range(6):
            score = float(np.clip(rng.normal(0.3 + 0.4 * label, 0.2), 0, 1))
            predictions.append({features.SOURCE: source + hostile, features.LABEL: label,
                                features.GENERATOR: "g", scoring.ORIGINAL: score, scoring.TTA: score})
    decisions = {scoring.ORIGINAL: {"threshold": 0.5, "method": "the model's threshold"},
                 scoring.TTA: {"threshold": 0.3, "method": "calibrated on the eval split's rotation-averaged scores"}}
    return content.Report(
        model_uri="/m/1", model_version="1", threshold=0.5, decision={"method": "fixed"}, blessed=False,
        failures=[f"auc is 0.1 on slice source={hostile}"], slices=slices or [], predictions=predictions,
        columns=[scoring.ORIGINAL, scoring.TTA], column_decisions=decisions,
        settings={"tta_angles": [-15.0, 0.0, 15.0], "min_real_images": 1}, validation=validation)


def _style(page_html):
    return re.search(r"<style>(.*?)</style>", page_html, re.S).group(1)


def test_both_reports_share_one_layout_and_stylesheet():
    rng = np.random.default_rng(0)
    ingestion = reporting.render("ingestion.html", report=_ingestion_report(rng))
    evaluation_page = page.render_html(_evaluation_report(rng))
    with open(f"{reporting.TEMPLATES_DIR}/style.css", encoding="utf-8") as f:
        stylesheet = f.read()
    for html in (ingestion, evaluation_page):
        assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
        assert _style(html).strip() == stylesheet.strip()
        assert re.search(r"<title>(.+?)</title>", html).group(1) == re.search(r"<h1>(.+?)</h1>", html).group(1)


@pytest.mark.parametrize("seed", [1, 2])
def test_text_from_files_and_slices_reaches_the_page_as_text_never_as_markup(seed):
    rng = np.random.default_rng(seed)
    hostile = HOSTILE[:int(rng.integers(8, len(HOSTILE) + 1))]
    ingestion = reporting.render("ingestion.html", report=_ingestion_report(rng, hostile=hostile))
    evaluation_page = page.render_html(_evaluation_report(rng, hostile=hostile))
    for html in (ingestion, evaluation_page):
        assert "<script" not in html and "<b>" not in html.replace("<b>0.500000</b>", "")
    assert "&lt;script&gt;" in ingestion and "&lt;script&gt;" in evaluation_page


def test_ingestion_report_accounts_for_every_dataset_and_lists_at_most_200_quarantined_files():
    rng = np.random.default_rng(3)
    report = _ingestion_report(rng, quarantined=130)
    html = reporting.render("ingestion.html", report=report)
    for name, row in report["datasets"].items():
        cells = re.search(rf"<tr><td>{name}</td>(.*?)</tr>", html).group(1)
        assert re.findall(r"<td>([^<]*)</td>", cells) == [
            row["label"], str(row["found"]), str(row["ingested"]), "0", str(row["quarantined"]),
            str(row["splits"]["test"]), str(row["splits"]["train"])]  # splits in name order
    assert f"{report['totals']['found']} files found" in html
    assert '<p class="warn">SHORTCUT: format alone' in html
    assert html.count("truncated") == 200
    assert "… and 60 more in report.json." in html


@pytest.mark.parametrize("sources", [2, 8, 14])
@pytest.mark.parametrize("models", [1, 2])
def test_per_source_chart_keeps_its_title_labels_and_legend_inside_the_picture(sources, models):
    rng = np.random.default_rng(sources)
    names = [(f"StyleGAN_CelebA_{i}" if i % 2 else f"FFHQ_Wide_{i}", i % 2) for i in range(sources)]
    reports = [_evaluation_report(rng, sources=names) for _ in range(models)]
    figure = page.source_bars(reports, [f"2026010{k}T000000Z" for k in range(models)])
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    picture = figure.bbox
    texts = [t for t in figure.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_window_extent"))
             if t.get_text() and t.get_visible()]
    assert any(t.get_text() == "accuracy per source" for t in texts)
    for text in texts:
        box = text.get_window_extent(renderer)
        assert (box.x0 >= picture.x0 - 1 and box.x1 <= picture.x1 + 1 and box.y0 >= picture.y0 - 1
                and box.y1 <= picture.y1 + 1), f"{text.get_text()!r} is cut off: {box} outside {picture}"
    page._pyplot().close(figure)


def _slice(name, share_fake):
    row = {"slice": name, evaluation.MEAN_LABEL: share_fake}
    for metric in page.SLICE_METRICS:
        row.setdefault(metric, 0.0)
    return row


def test_metrics_a_one_class_slice_cannot_measure_read_undefined_not_zero():
    rows = [verdict._undefined_as_nan(_slice(name, share)) for name, share in
            (("label=0", 0.0), ("source=FakeA", 1.0), ("overall", 0.5))]
    real_only, fake_only, both = rows
    for metric in (evaluation.AUC, evaluation.AVERAGE_PRECISION, evaluation.PRECISION, evaluation.TPR_AT_1PCT_FPR):
        assert math.isnan(real_only[metric]) and math.isnan(fake_only[metric]) and both[metric] == 0.0
    assert math.isnan(real_only[evaluation.RECALL]) and real_only[evaluation.FALSE_POSITIVE_RATE] == 0.0
    assert math.isnan(fake_only[evaluation.FALSE_POSITIVE_RATE]) and fake_only[evaluation.RECALL] == 0.0
    html = page.render_html(_evaluation_report(np.random.default_rng(4), slices=rows))
    table = html[html.index("Every TFMA slice"):]
    real_cells = re.findall(r"<td>(.*?)</td>", re.search(r"<tr><td>label=0</td>.*?</tr>", table).group(0))
    by_metric = dict(zip(["slice"] + page.SLICE_METRICS, real_cells))
    assert "undefined" in by_metric[evaluation.AUC] and "undefined" in by_metric[evaluation.PRECISION]
    assert by_metric[evaluation.FALSE_POSITIVE_RATE] == "0.0000"


def test_each_score_column_is_read_at_its_own_threshold():
    report = _evaluation_report(np.random.default_rng(5))
    for row in report.sources:
        members = [p for p in report.predictions if p[features.SOURCE] == row["source"]]
        # The TTA scores equal the original ones here; only the thresholds differ.
        for column, threshold in ((scoring.ORIGINAL, 0.5), (scoring.TTA, 0.3)):
            called_fake = np.array([p[column] > threshold for p in members])
            expected = called_fake.mean() if row["label"] == "fake" else 1 - called_fake.mean()
            assert row[f"accuracy_{column}"] == pytest.approx(expected)
    html = page.render_html(report)
    assert "threshold 0.300000: calibrated on the eval split&#39;s rotation-averaged scores" in html


def test_data_validation_warnings_appear_in_both_reports():
    rng = np.random.default_rng(7)
    validation = {"fail_on": ["ERROR"], "drift_severity": "WARNING", "blocking": [],
                  "checked": ["schema: every split", "drift: the train split"],
                  "warnings": [f"source: expected at most 0.1; found 0.3 {HOSTILE}", "label: found 0.2"]}
    ingestion = reporting.render("ingestion.html", report=_ingestion_report(rng), validation=validation)
    evaluation_page = page.render_html(_evaluation_report(rng, validation=validation))
    for html in (ingestion, evaluation_page):
        assert html.count('<p class="warn">WARNING: ') == 2
        assert "found 0.3 &lt;script&gt;" in html and "<li>drift: the train split</li>" in html
    clean = dict(validation, warnings=[])
    assert "No anomaly in what was checked." in reporting.render(
        "ingestion.html", report=_ingestion_report(rng), validation=clean)
    assert "Data validation" not in reporting.render("ingestion.html", report=_ingestion_report(rng))
