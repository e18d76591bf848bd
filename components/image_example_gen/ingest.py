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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2

from fakeface import catalog as catalog_lib
from fakeface import near_duplicates, shortcuts
from fakeface.file_attributes import FileAttributes
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


class _KeepOne(beam.DoFn):
    """Of byte-identical files keeps the first by (dataset, path): deterministic."""

    def process(self, keyed: Tuple[str, Iterable[FileRecord]]) -> Iterable:
        content_hash, records = keyed
        kept, *dropped = sorted(records, key=lambda r: (r.source, r.relative_path))
        for record in dropped:
            yield beam.pvalue.TaggedOutput(DUPLICATES, {
                "content_sha256": content_hash,
                "kept": f"{kept.source}/{kept.relative_path}",
                "source": record.source,
                "dropped": f"{record.source}/{record.relative_path}"})
        yield kept


def _decisions(records: List[near_duplicates.FileRecord], max_bits: int) -> Dict[Tuple[str, str], Tuple[str, str]]:
    """(dataset, path below its root) -> (near-duplicate cluster, label-conflict reason or "") for every file."""
    if not records:
        return {}
    ids = near_duplicates.cluster_ids([r.perceptual_hash for r in records], max_bits)
    clustered = [dataclasses.replace(r, cluster_id=cluster_id) for r, cluster_id in zip(records, ids)]
    conflicts = {(r.dataset, r.path): reason for conflict in near_duplicates.label_conflicts(clustered, max_bits)
                 for r, reason in conflict.reasons()}
    return {(r.dataset, r.path): (r.cluster_id, conflicts.get((r.dataset, r.path), "")) for r in clustered}


def _decide(record: FileRecord, decisions: Mapping[Tuple[str, str], Tuple[str, str]]) -> Iterable:
    """The record with its cluster, or its quarantine entry when it copies a file of the other label."""
    cluster_id, conflict = decisions[(record.source, record.relative_path)]
    if conflict:
        yield beam.pvalue.TaggedOutput(QUARANTINE, Quarantined(record.source, record.path, conflict).to_dict())
    else:
        yield dataclasses.replace(record, cluster_id=cluster_id)


def _near_duplicates(keyed: Tuple[str, Iterable[FileRecord]],
                     labels: Mapping[str, str]) -> Iterable[Dict[str, Any]]:
    """A report row for a near-duplicate cluster that more than one kept file falls in."""
    cluster_id, records = keyed
    records = list(records)
    if len(records) > 1:
        yield {"cluster": cluster_id,
               "files": sorted(f"{r.source}/{r.relative_path}" for r in records),
               "labels": sorted({labels[r.source] for r in records})}


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
    # Every file's cluster and label conflicts need every file's hash at once:
    # a small record per file, never the bytes.
    decisions = (records
                 | "HashRecords" >> beam.Map(lambda r: near_duplicates.FileRecord(
                     content_hash=r.content_sha256, perceptual_hash=r.perceptual_hash, cluster_id="",
                     label=datasets[r.source].label, dataset=r.source, path=r.relative_path))
                 | "AllHashes" >> beam.combiners.ToList()
                 | "Cluster" >> beam.Map(_decisions, config.near_duplicate_bits))
    decided = (records
               | "Decide" >> beam.FlatMap(_decide, beam.pvalue.AsSingleton(decisions)).with_outputs(
                   QUARANTINE, main="records"))
    kept = (decided["records"]
            | "ByContent" >> beam.Map(lambda r: (r.content_sha256, r))
            | "GroupIdentical" >> beam.GroupByKey()
            | "KeepOne" >> beam.ParDo(_KeepOne()).with_outputs(DUPLICATES, main="kept"))
    near_duplicate_rows = (kept["kept"]
                           | "ByCluster" >> beam.Map(lambda r: (r.cluster_id, r))
                           | "GroupByCluster" >> beam.GroupByKey()
                           | "SamePicture" >> beam.FlatMap(_near_duplicates, labels))
    return decided[QUARANTINE], kept["kept"], kept[DUPLICATES], near_duplicate_rows


@beam.ptransform_fn
def IngestCatalog(pipeline: beam.Pipeline, catalog: catalog_lib.Catalog, config: IngestConfig,
                  split_config: example_gen_pb2.SplitConfig,
                  examples_dir: Optional[str]) -> Dict[str, beam.PCollection]:
    """Every dataset of `catalog` listed, inspected, de-duplicated, split and, unless
    `examples_dir` is None (a dry run), written there as the Examples artifact's splits.

    Returns the report's parts as PCollections of small records: STATISTICS
    ([kind, source, label, value, count] rows), FOUND ([FOUND, dataset, count]),
    QUARANTINE, DUPLICATES and NEAR_DUPLICATES (one dict each), and ATTRIBUTES
    ([dataset, file attributes] per ingested file, for the shortcut guard).
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
        ATTRIBUTES: batches | "Attributes" >> beam.FlatMap(
            lambda batch: [[r.source, dataclasses.asdict(r.attributes)] for _, r in batch]),
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
    guard = shortcuts.guard([(source, FileAttributes(**values)) for source, values in _read_parts(report_dir, ATTRIBUTES)],
                            catalog.datasets, config.shortcut_warning_accuracy)
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
