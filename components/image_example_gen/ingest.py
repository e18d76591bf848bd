"""Ingestion of a catalog with Beam, and the report that accounts for every file.

Shared by ImageExampleGen's executor and `fakeface ingest`, so a dataset can be
checked with exactly the pipeline's code before a long run.

Four stages, and only small records between them (records.py):

1. list every entry of every dataset (listing.py), in batches of files;
2. inspect each file: one read for its SHA-256, one decode by the model's own
   decoder for its size and perceptual hash, in a sandboxed child process
   (inspection.py, sandbox.py);
3. decide on the small records: exact duplicates kept once, the split of
   each image, the near-duplicates and the report's counts;
4. read each kept file again and write its tf.Example straight into its
   split's TFRecord file (writing.py).

Every file found under a dataset ends in exactly one place: ingested, dropped
as a byte-identical duplicate of a file that was kept, or quarantined with the
reason. The report reconciles found = ingested + duplicates + quarantined per
dataset, and fails loudly if it does not.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2

from fakeface import catalog as catalog_lib
from fakeface import near_duplicates, shortcuts
from fakeface.components import reporting
from fakeface.components.image_example_gen import listing, writing
from fakeface.components.image_example_gen.records import FileRecord, FileRef, Quarantined
from fakeface.components.image_example_gen.sandbox import Sandbox
from fakeface.pipeline.config import IngestConfig

STATISTICS = "statistics"
QUARANTINE = "quarantine"
DUPLICATES = "duplicates"
NEAR_DUPLICATES = "near_duplicates"
ATTRIBUTES = "attributes"
FOUND = "found"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
# The report's per-source tables of how the files were saved.
PER_SOURCE_KINDS = ("format", "jpeg_quality", "resolution")
# Kept files per batch of the stage that writes them.
_WRITE_BATCH = 64


def split_index(split_key: str, split_config: example_gen_pb2.SplitConfig) -> int:
    """The output split of an image: TFX's own partition function on its split key."""
    example = tf.train.Example(features=tf.train.Features(feature={
        split_config.partition_feature_name: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[split_key.encode()]))}))
    buckets = []
    for split in split_config.splits:
        buckets.append((buckets[-1] if buckets else 0) + split.hash_buckets)
    return base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
        example, len(buckets), buckets, split_config)


class _List(beam.DoFn):
    """Stage 1: a dataset's regular files in batches; everything else it holds under QUARANTINE."""

    def process(self, dataset: catalog_lib.Dataset) -> Iterable:
        found = 0
        refs: List[FileRef] = []
        for entry in listing.list_dataset(dataset):
            found += 1
            if isinstance(entry, Quarantined):
                yield beam.pvalue.TaggedOutput(QUARANTINE, entry.to_dict())
            else:
                refs.append(entry)
        yield beam.pvalue.TaggedOutput(FOUND, ["found", dataset.name, found])
        yield from listing.batches(iter(refs))


class _Inspect(beam.DoFn):
    """Stage 2: a batch of files to a FileRecord each, or a quarantine entry."""

    def __init__(self, config: IngestConfig):
        self._config = config
        self._sandbox: Optional[Sandbox] = None

    def setup(self) -> None:
        self._sandbox = Sandbox(self._config)

    def process(self, batch: Sequence[FileRef]) -> Iterable:
        for result in self._sandbox.inspect(batch):
            if isinstance(result, Quarantined):
                yield beam.pvalue.TaggedOutput(QUARANTINE, result.to_dict())
            else:
                yield result

    def teardown(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()


class _Decision(NamedTuple):
    """What stage 3 decides of one file."""

    cluster_id: str  # its near-duplicate cluster
    conflict: str  # the label-conflict quarantine reason, or ""
    kept: str  # "dataset/path" of the byte-identical file kept instead of it, or ""


def _decisions(records: List[near_duplicates.FileRecord], max_bits: int) -> Dict[Tuple[str, str], _Decision]:
    """(dataset, path below its root) -> its decision, for every file.

    Label conflicts are judged on every file, byte-identical ones included;
    of the byte-identical files left, the first by (dataset, path) is kept:
    deterministic whatever order the files arrive in.
    """
    if not records:
        return {}
    ids = near_duplicates.cluster_ids([r.perceptual_hash for r in records], max_bits)
    clustered = [dataclasses.replace(r, cluster_id=cluster_id) for r, cluster_id in zip(records, ids)]
    conflicts = {(r.dataset, r.path): reason for conflict in near_duplicates.label_conflicts(clustered, max_bits)
                 for r, reason in conflict.reasons()}
    first: Dict[str, near_duplicates.FileRecord] = {}
    for r in sorted(clustered, key=lambda r: (r.dataset, r.path)):
        if (r.dataset, r.path) not in conflicts:
            first.setdefault(r.content_hash, r)
    return {(r.dataset, r.path): _Decision(
        r.cluster_id, conflicts.get((r.dataset, r.path), ""),
        "" if first.get(r.content_hash, r) is r else first[r.content_hash].name) for r in clustered}


def _decide(record: FileRecord, decisions: Mapping[Tuple[str, str], _Decision]) -> Iterable:
    """The record with its cluster; or its quarantine entry when it copies a file of the other label;
    or its duplicates row when a byte-identical file is kept instead."""
    decision = decisions[(record.source, record.relative_path)]
    if decision.conflict:
        yield beam.pvalue.TaggedOutput(QUARANTINE, Quarantined(record.source, record.path,
                                                               decision.conflict).to_dict())
    elif decision.kept:
        yield beam.pvalue.TaggedOutput(DUPLICATES, {
            "content_sha256": record.content_sha256, "kept": decision.kept, "source": record.source,
            "dropped": f"{record.source}/{record.relative_path}"})
    else:
        yield dataclasses.replace(record, cluster_id=decision.cluster_id)


def _near_duplicates(decisions: Mapping[Tuple[str, str], _Decision],
                     labels: Mapping[str, str]) -> Iterable[Dict[str, Any]]:
    """A report row for each near-duplicate cluster that more than one ingested file falls in."""
    clusters: Dict[str, List[Tuple[str, str]]] = collections.defaultdict(list)
    for file, decision in decisions.items():
        if not decision.conflict and not decision.kept:
            clusters[decision.cluster_id].append(file)
    for cluster_id, files in clusters.items():
        if len(files) > 1:
            yield {"cluster": cluster_id,
                   "files": sorted(f"{dataset}/{path}" for dataset, path in files),
                   "labels": sorted({labels[dataset] for dataset, _ in files})}


def _count(batch: Sequence[Tuple[int, FileRecord]], split_names: Sequence[str],
           labels: Mapping[str, str]) -> collections.Counter:
    """What the report counts of a batch of ingested images, by (kind, source, label, value)."""
    counts: collections.Counter = collections.Counter()
    for split, record in batch:
        label = labels[record.source]
        values = {
            "split": split_names[split],
            "format": record.format,
            "jpeg_quality": str(record.jpeg_quality) if record.jpeg_quality else "not JPEG",
            "resolution": f"{record.width}x{record.height}",
            "mode": record.mode,
            "exif_orientation": str(record.exif_orientation or "none"),
            "frames": str(record.frames),
        }
        counts.update((kind, record.source, label, value) for kind, value in values.items())
    return counts


def _merge_counts(counts: Iterable[collections.Counter]) -> collections.Counter:
    return sum(counts, collections.Counter())


@beam.ptransform_fn
def _Decide(records: beam.PCollection, datasets: Mapping[str, catalog_lib.Dataset], labels: Mapping[str, str],
            config: IngestConfig):
    """Stage 3 on the inspected records: (label-conflict quarantine entries, the kept records with their
    clusters, the exact duplicates dropped, the report's near-duplicate rows)."""
    # Every file's cluster, label conflict and byte-identical twin need every
    # file's hashes at once: a small record per file, never the bytes, and no
    # grouping of the inspected records themselves.
    decisions = (records
                 | "HashRecords" >> beam.Map(lambda r: near_duplicates.FileRecord(
                     content_hash=r.content_sha256, perceptual_hash=r.perceptual_hash, cluster_id="",
                     label=datasets[r.source].label, dataset=r.source, path=r.relative_path))
                 | "AllHashes" >> beam.combiners.ToList()
                 | "Cluster" >> beam.Map(_decisions, config.near_duplicate_bits))
    decided = (records
               | "Decide" >> beam.FlatMap(_decide, beam.pvalue.AsSingleton(decisions)).with_outputs(
                   QUARANTINE, DUPLICATES, main="kept"))
    near_duplicate_rows = decisions | "SamePicture" >> beam.FlatMap(_near_duplicates, labels)
    return decided[QUARANTINE], decided["kept"], decided[DUPLICATES], near_duplicate_rows


@beam.ptransform_fn
def IngestCatalog(pipeline: beam.Pipeline, catalog: catalog_lib.Catalog, config: IngestConfig,
                  split_config: example_gen_pb2.SplitConfig,
                  examples_dir: Optional[str]) -> Dict[str, beam.PCollection]:
    """Every dataset of `catalog` listed, inspected, de-duplicated, split and, unless
    `examples_dir` is None (a dry run), written there as the Examples artifact's splits.

    Returns the report's parts as PCollections of small records: STATISTICS
    ([kind, source, label, value, count] rows), FOUND ([FOUND, dataset, count]),
    QUARANTINE, DUPLICATES and NEAR_DUPLICATES (one dict each), and ATTRIBUTES
    ([dataset, shortcut-guard profile, ingested files] per profile a dataset has).
    """
    split_names = [s.name for s in split_config.splits]
    labels = {d.name: d.label_name for d in catalog.datasets}
    datasets = {d.name: d for d in catalog.datasets}
    listed = (pipeline
              | "Datasets" >> beam.Create(list(catalog.datasets))
              | "List" >> beam.ParDo(_List()).with_outputs(QUARANTINE, FOUND, main="batches"))
    inspected = (listed["batches"]
                 # Listing happens in one place; inspecting spreads over the workers.
                 | "Spread" >> beam.Reshuffle()
                 | "Inspect" >> beam.ParDo(_Inspect(config)).with_outputs(QUARANTINE, main="records"))
    conflicts, kept, duplicates, near_duplicate_rows = (
        inspected["records"] | "Decide" >> _Decide(datasets, labels, config))
    batches = (kept
               | "Split" >> beam.Map(lambda r: (split_index(r.cluster_id, split_config), r))
               | "Batch" >> beam.BatchElements(min_batch_size=_WRITE_BATCH, max_batch_size=_WRITE_BATCH))
    quarantined = [listed[QUARANTINE], inspected[QUARANTINE], conflicts]
    if examples_dir is not None:
        staging_dir = os.path.join(examples_dir, ".staging")
        written = batches | "Write" >> beam.ParDo(writing.WriteExamples(
            staging_dir, catalog.datasets, config)).with_outputs(
                writing.QUARANTINE, writing.SHARDS, main="written")
        _ = (written[writing.SHARDS]
             | "Shards" >> beam.combiners.ToList()
             | "Finalize" >> beam.Map(writing.finalize, examples_dir, split_names, staging_dir))
        batches = written["written"]
        quarantined.append(written[writing.QUARANTINE])
    statistics = (batches
                  | "Count" >> beam.Map(_count, split_names, labels)
                  | "CountAll" >> beam.CombineGlobally(_merge_counts)
                  | "StatisticRows" >> beam.FlatMap(lambda counts: [list(k) + [n] for k, n in counts.items()]))
    return {
        STATISTICS: statistics,
        FOUND: listed[FOUND],
        QUARANTINE: quarantined | "FlattenQuarantine" >> beam.Flatten(),
        DUPLICATES: duplicates,
        NEAR_DUPLICATES: near_duplicate_rows,
        ATTRIBUTES: (batches
                     | "Profiles" >> beam.FlatMap(lambda batch: [((r.source, r.profile), 1) for _, r in batch])
                     | "CountProfiles" >> beam.CombinePerKey(sum)
                     | "ProfileRows" >> beam.Map(lambda counted: [*counted[0], counted[1]])),
    }


def _json_lines(pcoll: beam.PCollection, path: str, label: str) -> None:
    _ = (pcoll
         | f"ToJson[{label}]" >> beam.Map(lambda row: json.dumps(row, sort_keys=True))
         | f"Write[{label}]" >> beam.io.WriteToText(path, shard_name_template="-SSSSS-of-NNNNN",
                                                    file_name_suffix=".jsonl"))


def write_report_parts(ingested: Dict[str, beam.PCollection], report_dir: str) -> None:
    """Adds the writing of the report's parts to the pipeline; render_report() assembles them."""
    for name, pcoll in ingested.items():
        _json_lines(pcoll, os.path.join(report_dir, "parts", name), name)


def _read_parts(report_dir: str, name: str) -> List[Any]:
    rows = []
    for path in sorted(tf.io.gfile.glob(os.path.join(report_dir, "parts", f"{name}-*.jsonl"))):
        with tf.io.gfile.GFile(path) as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


class ReportError(RuntimeError):
    """The counts do not reconcile: some file was neither ingested nor set aside."""


def _datasets_table(catalog: catalog_lib.Catalog, found: Mapping[str, int], statistics: Sequence[Sequence[Any]],
                    duplicates: Sequence[Mapping[str, str]],
                    quarantine: Sequence[Mapping[str, str]]) -> Dict[str, Dict[str, Any]]:
    """Per dataset: found, ingested, duplicates, quarantined and images per split."""
    table = {d.name: {"label": d.label_name, "found": found.get(d.name, 0), "ingested": 0, "duplicates": 0,
                      "quarantined": 0, "splits": {}} for d in catalog.datasets}
    for kind, source, _, value, count in statistics:
        if kind == "split":
            table[source]["ingested"] += count
            table[source]["splits"][value] = table[source]["splits"].get(value, 0) + count
    for entry in duplicates:
        table[entry["source"]]["duplicates"] += 1
    for entry in quarantine:
        table[entry["source"]]["quarantined"] += 1
    return table


def _reconcile(table: Mapping[str, Mapping[str, Any]]) -> None:
    """Raises ReportError unless every dataset's found = ingested + duplicates + quarantined."""
    for name, row in table.items():
        accounted = row["ingested"] + row["duplicates"] + row["quarantined"]
        if accounted != row["found"]:
            raise ReportError(f"dataset {name}: {row['found']} files found but {accounted} accounted for "
                              f"({row['ingested']} ingested, {row['duplicates']} duplicates, "
                              f"{row['quarantined']} quarantined)")


def _attributes(statistics: Sequence[Sequence[Any]]) -> Dict[str, Dict[str, Dict[str, Dict[str, int]]]]:
    """kind -> source -> label -> value -> count, for every kind but the split."""
    attributes: Dict[str, Dict[str, Dict[str, Dict[str, int]]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: collections.defaultdict(dict)))
    for kind, source, label, value, count in statistics:
        if kind != "split":
            attributes[kind][source][label][value] = count
    return attributes


def _guard_rows(result: shortcuts.GuardResult) -> List[Dict[str, Any]]:
    """The guard's figures as the report lists them, scope by scope."""
    return [{"scope": f.scope.describe(), "kind": f.scope.kind, "attribute": f.attribute,
             "balanced_accuracy": round(f.balanced_accuracy, 4), "real": f.real, "fake": f.fake,
             "used": list(f.used), "remedies": list(f.remedies)} for f in result.figures]


def render_report(report_dir: str, catalog: catalog_lib.Catalog, config: IngestConfig,
                  dry_run: bool = False) -> Dict[str, Any]:
    """Assembles report.json and report.html from the parts; returns the report."""
    statistics = _read_parts(report_dir, STATISTICS)
    quarantine = sorted(_read_parts(report_dir, QUARANTINE), key=lambda q: (q["source"], q["path"]))
    duplicates = sorted(_read_parts(report_dir, DUPLICATES), key=lambda d: d["dropped"])
    found = {name: count for _, name, count in _read_parts(report_dir, FOUND)}
    table = _datasets_table(catalog, found, statistics, duplicates, quarantine)
    _reconcile(table)
    attributes = _attributes(statistics)
    profiles: collections.Counter = collections.Counter()
    for source, profile, files in _read_parts(report_dir, ATTRIBUTES):
        profiles[(source, tuple(profile))] += files
    guard = shortcuts.guard(profiles, catalog.datasets, config.shortcut_warning_accuracy)
    report = {
        "catalog": catalog.path,
        "dry_run": dry_run,
        "options": dataclasses.asdict(config),
        "datasets": table,
        "totals": {k: sum(row[k] for row in table.values())
                   for k in ("found", "ingested", "duplicates", "quarantined")},
        "warnings": [w.message for w in guard.warnings],
        "shortcut_guard": _guard_rows(guard),
        "per_source": {kind: {s: dict(v) for s, v in attributes[kind].items()} for kind in PER_SOURCE_KINDS},
        "image_modes": {s: dict(v) for s, v in attributes["mode"].items()},
        "exif_orientation": {s: dict(v) for s, v in attributes["exif_orientation"].items()},
        "frames": {s: dict(v) for s, v in attributes["frames"].items()},
        "label_conflicts": [q for q in quarantine if q["reason"].startswith(near_duplicates.LABEL_CONFLICT)],
        "quarantine": quarantine,
        "duplicates": duplicates,
        "near_duplicates": sorted(_read_parts(report_dir, NEAR_DUPLICATES), key=lambda n: n["files"]),
    }
    with tf.io.gfile.GFile(os.path.join(report_dir, REPORT_JSON), "w") as f:
        f.write(json.dumps(report, indent=2, sort_keys=True))
    with tf.io.gfile.GFile(os.path.join(report_dir, REPORT_HTML), "w") as f:
        f.write(reporting.render("ingestion.html", report=report))
    return report
