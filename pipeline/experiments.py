"""The founding notes' experiment matrix, as pipeline runs.

Each experiment trains on a subset of the catalog's sources and is tested on
all of them, which is how the notes measured generalisation (their Tables 3
and 6: rows are datasets, columns are models). The catalog names its
experiments (its `experiments:` section; catalogs/founding.yaml holds the
notes' v1, v2 and v3), and any catalog with more than one generator of fakes
also gives leave-one-generator-out experiments. Every experiment is a run of
the same pipeline with `trainer.train_sources` set; they share one pipeline
of their own, so ingestion and Transform run once, and neither their models
nor their blessings mix with the production pipeline's.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from typing import Dict, List, Sequence, Tuple

from fakeface import catalog as catalog_lib
from fakeface import features
from fakeface.components import reporting
from fakeface.pipeline import config as config_lib

PIPELINE_SUFFIX = "-experiments"


def leave_one_generator_out(catalog: catalog_lib.Catalog) -> Dict[str, Tuple[str, ...]]:
    """One experiment per generator: every source except that generator's fakes.

    A catalog whose fakes all come from one generator has none: without them
    there would be nothing fake to train on.
    """
    generators = sorted({d.generator for d in catalog.datasets if d.label == features.FAKE})
    if len(generators) < 2:
        return {}
    return {f"without-{generator}": tuple(d.name for d in catalog.datasets
                                         if not (d.label == features.FAKE and d.generator == generator))
            for generator in generators}


def experiment_config(base: config_lib.PipelineConfig, name: str, sources: Sequence[str],
                      out_dir: str) -> config_lib.PipelineConfig:
    config = dataclasses.replace(
        base,
        pipeline_name=base.pipeline_name + PIPELINE_SUFFIX,
        pipeline_root="",
        serving_model_dir=os.path.join(out_dir, "serving", name),
        trainer=dataclasses.replace(base.trainer, train_sources=list(sources)),
        # Experiments are compared with each other, not blessed against the
        # previous one, which trained on other sources.
        evaluator=dataclasses.replace(base.evaluator, baseline="none"))
    config_lib.validate(config)
    return config


def run(base: config_lib.PipelineConfig, experiments: Dict[str, Tuple[str, ...]], out_dir: str) -> List[Dict]:
    """Runs every experiment and writes the matrix; returns its rows."""
    from fakeface.pipeline import local_runner, results

    catalog = catalog_lib.load(base.catalog_path)
    for name, sources in experiments.items():
        catalog.check_experiment(name, sources)
    summaries = {}
    for name, sources in experiments.items():
        config = experiment_config(base, name, sources, out_dir)
        run_id = local_runner.run(config)
        summary = results.run_summary(config.metadata_path_resolved, config.pipeline_name, run_id)
        if not summary.report_html:
            failed = sorted(n for n, s in summary.executions.items() if s == "FAILED")
            raise RuntimeError(f"experiment {name}: the run wrote no evaluation report (failed: {failed})")
        shutil.copytree(os.path.dirname(summary.report_html), os.path.join(out_dir, name), dirs_exist_ok=True)
        summaries[name] = results.report_summary(summary.report_html)
    rows = matrix_rows(summaries, experiments)
    write_matrix(rows, list(experiments), out_dir)
    return rows


def matrix_rows(summaries: Dict[str, Dict], experiments: Dict[str, Tuple[str, ...]]) -> List[Dict]:
    """Rows are sources, columns experiments: accuracy at each model's threshold.

    A source an experiment trained on is marked, as the notes' tables did,
    since its test accuracy is not a measure of generalisation.
    """
    first = next(iter(summaries.values()))
    rows = []
    for source_row in first["sources"]:
        source = source_row["source"]
        row = {"source": source, "label": source_row["label"], "examples": source_row["examples"]}
        for name, data in summaries.items():
            by_source = {r["source"]: r for r in data["sources"]}
            row[name] = by_source[source]["accuracy_original"] if source in by_source else None
            row[f"{name}_trained_on"] = source in experiments[name]
        rows.append(row)
    average = {"source": "average", "label": "", "examples": sum(r["examples"] for r in rows)}
    for name in summaries:
        values = [r[name] for r in rows if r[name] is not None]
        average[name] = sum(values) / len(values) if values else None
        average[f"{name}_trained_on"] = False
    return rows + [average]


def write_matrix(rows: List[Dict], names: List[str], out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "matrix.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "label", "examples"] + names)
        for row in rows:
            writer.writerow([row["source"], row["label"], row["examples"]]
                            + ["" if row[n] is None else f"{row[n]:.4f}" for n in names])

    def cell(row: Dict, name: str) -> str:
        if row[name] is None:
            return "n/a"
        return f"{row[name]:.1%}" + (" (trained on)" if row[f"{name}_trained_on"] else "")

    lines = ["| source | label | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    lines += [f"| {r['source']} | {r['label']} | " + " | ".join(cell(r, n) for n in names) + " |" for r in rows]
    with open(os.path.join(out_dir, "matrix.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "matrix.html"), "w", encoding="utf-8") as f:
        f.write(reporting.render("matrix.html", rows=rows, names=names, cell=cell))
