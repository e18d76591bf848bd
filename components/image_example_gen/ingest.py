"""Ingestion of a catalog with Beam, and the report that accounts for every file.

Shared by ImageExampleGen's executor and `fakeface ingest`, so a dataset can be
checked with exactly the pipeline's code before a long run.

Every file found under a dataset ends in exactly one place: ingested, dropped
as a byte-identical duplicate of a file that was kept, or quarantined with the
reason. The report reconciles found = ingested + duplicates + quarantined per
dataset, and fails loudly if it does not.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import html
import io
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2

from fakeface import catalog as catalog_lib
from fakeface import features, images
from fakeface.shortcuts import balanced_accuracy

EXAMPLES = "examples"
QUARANTINE = "quarantine"
DUPLICATES = "duplicates"
FOUND = "found"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
# Attributes a detector can learn instead of the pixels: the shortcut guard
# checks whether any one of them alone separates real from fake.
SHORTCUT_ATTRIBUTES = ("format", "jpeg_quality", "resolution")
_QUARANTINE_SHOWN = 200


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    min_side: int = images.DEFAULT_MIN_SIDE
    reencode_jpeg_quality: int = 0
    strip_metadata: bool = False
    near_duplicate_bits: int = 2
    shortcut_warning_accuracy: float = 0.9

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "IngestOptions":
        return cls(**dict(data or {}))


def split_index(perceptual_hash: str, split_config: example_gen_pb2.SplitConfig) -> int:
    """The output split of an image: TFX's own partition function on the same key."""
    example = tf.train.Example(features=tf.train.Features(feature={
        split_config.partition_feature_name: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[perceptual_hash.encode()]))}))
    buckets = []
    for split in split_config.splits:
        buckets.append((buckets[-1] if buckets else 0) + split.hash_buckets)
    return base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
        example, len(buckets), buckets, split_config)


def reencode_jpeg(data: bytes, quality: int) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, subsampling="4:2:0", progressive=False)
    return buffer.getvalue()


def to_example(record: Mapping[str, Any]) -> tf.train.Example:
    """A tf.Example with every raw feature of features.RAW_FEATURES."""
    feature = {}
    for name in features.STRING_FEATURES:
        value = record[name]
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[value if isinstance(value, bytes) else value.encode("utf-8")]))
    for name in features.INT_FEATURES:
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(record[name])]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def iter_dataset_files(dataset: catalog_lib.Dataset) -> Iterator[str]:
    """Every file of a dataset, one at a time, in a stable order.

    Listed with tf.io.gfile, which sees the same files on local disks and in
    buckets, and, unlike Beam's MatchFiles, also lists entries that cannot be
    read (such as broken links) so that they are quarantined, not lost.
    """
    if dataset.is_glob:
        for path in sorted(tf.io.gfile.glob(dataset.location)):
            if not tf.io.gfile.isdir(path):
                yield path
        return
    if not tf.io.gfile.isdir(dataset.location):
        return
    for root, dirs, files in tf.io.gfile.walk(dataset.location):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(root, name)


def _relative_path(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else os.path.basename(path)


def _read(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def _unreadable(error: Exception) -> str:
    return f"unreadable: {getattr(error, 'message', None) or error}"


@dataclasses.dataclass(frozen=True)
class _FileRef:
    source: str
    path: str
    relative_path: str


class _HashFile(beam.DoFn):
    """Reads one file for its SHA-256: (hash, ref), or a quarantine entry."""

    def __init__(self, dataset: catalog_lib.Dataset):
        self._dataset = dataset

    def process(self, path: str) -> Iterable[Any]:
        try:
            digest = hashlib.sha256(_read(path)).hexdigest()
        except (OSError, tf.errors.OpError) as e:
            yield beam.pvalue.TaggedOutput(QUARANTINE, {
                "source": self._dataset.name, "path": path, "reason": _unreadable(e)})
            return
        yield digest, _FileRef(self._dataset.name, path, _relative_path(path, self._dataset.root))


class _KeepOne(beam.DoFn):
    """Of byte-identical files keeps the first by (dataset, path): deterministic."""

    def process(self, keyed: Tuple[str, Iterable[_FileRef]]) -> Iterable[Any]:
        content_hash, refs = keyed
        ordered = sorted(refs, key=lambda r: (r.source, r.relative_path))
        kept = ordered[0]
        for dropped in ordered[1:]:
            yield beam.pvalue.TaggedOutput(DUPLICATES, {
                "content_sha256": content_hash,
                "kept": f"{kept.source}/{kept.relative_path}",
                "source": dropped.source,
                "dropped": f"{dropped.source}/{dropped.relative_path}"})
        yield content_hash, kept


class _InspectFile(beam.DoFn):
    """Reads a kept file and yields its record, or a quarantine entry with the reason."""

    def __init__(self, datasets: Mapping[str, catalog_lib.Dataset], options: IngestOptions):
        self._datasets = dict(datasets)
        self._options = options

    def process(self, keyed: Tuple[str, _FileRef]) -> Iterable[Any]:
        content_hash, ref = keyed
        dataset = self._datasets[ref.source]
        try:
            data = _read(ref.path)
            if hashlib.sha256(data).hexdigest() != content_hash:
                raise images.BadImage("changed while being ingested; run again")
            info = images.inspect(data, self._options.max_pixels, self._options.min_side)
            if self._options.reencode_jpeg_quality:
                data = reencode_jpeg(data, self._options.reencode_jpeg_quality)
                content_hash = hashlib.sha256(data).hexdigest()
                info = dataclasses.replace(info, format="JPEG",
                                           jpeg_quality=self._options.reencode_jpeg_quality)
        except (images.BadImage, OSError, tf.errors.OpError) as e:
            reason = str(e) if isinstance(e, images.BadImage) else _unreadable(e)
            yield beam.pvalue.TaggedOutput(QUARANTINE, {
                "source": dataset.name, "path": ref.path, "reason": reason})
            return
        yield {
            features.IMAGE_BYTES: data,
            features.LABEL: dataset.label,
            features.SOURCE: dataset.name,
            features.GENERATOR: dataset.generator,
            features.SHOT: dataset.shot,
            features.CONTENT_HASH: content_hash,
            features.PERCEPTUAL_HASH: info.perceptual_hash,
            features.IMAGE_FORMAT: info.format,
            features.WIDTH: info.width,
            features.HEIGHT: info.height,
            features.JPEG_QUALITY: info.jpeg_quality,
            features.RESOLUTION_BUCKET: images.resolution_bucket(info.width, info.height),
            features.RELATIVE_PATH: ref.relative_path,
            # Report-only facts, not features.
            "mode": info.mode,
            "exif_orientation": info.exif_orientation,
        }


@beam.ptransform_fn
def IngestCatalog(pipeline: beam.Pipeline, catalog: catalog_lib.Catalog,
                  options: IngestOptions) -> Dict[str, beam.PCollection]:
    """Every dataset of `catalog` read, checked and de-duplicated.

    Returns PCollections: EXAMPLES (one record dict per distinct image),
    QUARANTINE and DUPLICATES (one dict per file set aside), FOUND (a dataset
    name per file found). Nothing holds a whole dataset in one worker, and
    only hashes and paths are shuffled: files are hashed first, duplicates
    decided on the hashes, and only the kept files are read again and decoded.
    """
    hashed, quarantined, found = [], [], []
    for dataset in catalog.datasets:
        paths = (pipeline
                 | f"Dataset[{dataset.name}]" >> beam.Create([dataset])
                 | f"List[{dataset.name}]" >> beam.FlatMap(iter_dataset_files))
        if dataset.limit:
            # The same files every time: the `limit` smallest hashes of their paths.
            paths = (paths
                     | f"Limit[{dataset.name}]" >> beam.combiners.Top.Of(
                         dataset.limit, key=lambda p: hashlib.sha256(p.encode()).hexdigest(), reverse=True)
                     | f"Unlist[{dataset.name}]" >> beam.FlatMap(lambda ps: ps))
        # Listing happens in one place; reading spreads over the workers.
        paths = paths | f"Spread[{dataset.name}]" >> beam.Reshuffle()
        found.append(paths | f"Found[{dataset.name}]" >> beam.Map(lambda _, name: name, dataset.name))
        hashes = paths | f"Hash[{dataset.name}]" >> beam.ParDo(
            _HashFile(dataset)).with_outputs(QUARANTINE, main="hashes")
        hashed.append(hashes["hashes"])
        quarantined.append(hashes[QUARANTINE])
    kept = (hashed
            | "FlattenHashes" >> beam.Flatten()
            | "GroupIdentical" >> beam.GroupByKey()
            | "KeepOne" >> beam.ParDo(_KeepOne()).with_outputs(DUPLICATES, main="kept"))
    inspected = kept["kept"] | "Inspect" >> beam.ParDo(
        _InspectFile({d.name: d for d in catalog.datasets}, options)).with_outputs(QUARANTINE, main=EXAMPLES)
    quarantined.append(inspected[QUARANTINE])
    return {
        EXAMPLES: inspected[EXAMPLES],
        DUPLICATES: kept[DUPLICATES],
        QUARANTINE: quarantined | "FlattenQuarantine" >> beam.Flatten(),
        FOUND: found | "FlattenFound" >> beam.Flatten(),
    }


def _statistics(record: Mapping[str, Any], split_names: Sequence[str],
                split_config: example_gen_pb2.SplitConfig) -> Iterable[Tuple]:
    label = features.LABEL_NAMES[record[features.LABEL]]
    source = record[features.SOURCE]
    split = split_names[split_index(record[features.PERCEPTUAL_HASH], split_config)]
    yield ("split", source, label, split)
    yield ("format", source, label, record[features.IMAGE_FORMAT])
    quality = record[features.JPEG_QUALITY]
    yield ("jpeg_quality", source, label, str(quality) if quality else "not JPEG")
    yield ("resolution", source, label, f"{record[features.WIDTH]}x{record[features.HEIGHT]}")
    yield ("mode", source, label, record["mode"])
    yield ("exif_orientation", source, label, str(record["exif_orientation"] or "none"))


def _json_lines(pcoll: beam.PCollection, path: str, label: str) -> None:
    _ = (pcoll
         | f"ToJson[{label}]" >> beam.Map(lambda row: json.dumps(row, sort_keys=True))
         | f"Write[{label}]" >> beam.io.WriteToText(path, shard_name_template="-SSSSS-of-NNNNN",
                                                    file_name_suffix=".jsonl"))


def write_report_parts(ingested: Dict[str, beam.PCollection], report_dir: str,
                       split_config: example_gen_pb2.SplitConfig) -> None:
    """Adds the report's parts to the pipeline; render_report() assembles them."""
    split_names = [s.name for s in split_config.splits]
    examples = ingested[EXAMPLES]
    statistics = (examples
                  | "Statistics" >> beam.FlatMap(_statistics, split_names, split_config)
                  | "CountStatistics" >> beam.combiners.Count.PerElement()
                  | "StatisticRows" >> beam.Map(lambda kv: list(kv[0]) + [kv[1]]))
    found = (ingested[FOUND]
             | "CountFound" >> beam.combiners.Count.PerElement()
             | "FoundRows" >> beam.Map(lambda kv: ["found", kv[0], kv[1]]))
    near_duplicates = (examples
                       | "KeyByPicture" >> beam.Map(lambda r: (r[features.PERCEPTUAL_HASH], (
                           r[features.SOURCE], r[features.RELATIVE_PATH], r[features.LABEL])))
                       | "GroupByPicture" >> beam.GroupByKey()
                       | "SamePicture" >> beam.Filter(lambda kv: len(list(kv[1])) > 1)
                       | "NearDuplicateRows" >> beam.Map(lambda kv: {
                           "perceptual_hash": kv[0],
                           "files": sorted(f"{s}/{p}" for s, p, _ in kv[1]),
                           "labels": sorted({features.LABEL_NAMES[l] for _, _, l in kv[1]})}))
    _json_lines(statistics, os.path.join(report_dir, "parts", "statistics"), "Statistics")
    _json_lines(found, os.path.join(report_dir, "parts", "found"), "Found")
    _json_lines(ingested[QUARANTINE], os.path.join(report_dir, "parts", "quarantine"), "Quarantine")
    _json_lines(ingested[DUPLICATES], os.path.join(report_dir, "parts", "duplicates"), "Duplicates")
    _json_lines(near_duplicates, os.path.join(report_dir, "parts", "near_duplicates"), "NearDuplicates")


def _read_parts(report_dir: str, name: str) -> List[Any]:
    rows = []
    for path in sorted(tf.io.gfile.glob(os.path.join(report_dir, "parts", f"{name}-*.jsonl"))):
        with tf.io.gfile.GFile(path) as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


class ReportError(RuntimeError):
    """The counts do not reconcile: some file was neither ingested nor set aside."""


def render_report(report_dir: str, catalog: catalog_lib.Catalog, options: IngestOptions,
                  dry_run: bool = False) -> Dict[str, Any]:
    """Assembles report.json and report.html from the parts; returns the report."""
    statistics = _read_parts(report_dir, "statistics")
    found = {name: count for _, name, count in _read_parts(report_dir, "found")}
    quarantine = sorted(_read_parts(report_dir, "quarantine"), key=lambda q: (q["source"], q["path"]))
    duplicates = sorted(_read_parts(report_dir, "duplicates"), key=lambda d: d["dropped"])
    near_duplicates = sorted(_read_parts(report_dir, "near_duplicates"), key=lambda n: n["files"])

    table: Dict[str, Dict[str, Any]] = {}
    for dataset in catalog.datasets:
        table[dataset.name] = {"label": dataset.label_name, "found": found.get(dataset.name, 0),
                               "ingested": 0, "duplicates": 0, "quarantined": 0, "splits": {}}
    attributes: Dict[str, Dict[str, Dict[str, Dict[str, int]]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: collections.defaultdict(dict)))
    for kind, source, label, value, count in statistics:
        if kind == "split":
            table[source]["ingested"] += count
            table[source]["splits"][value] = table[source]["splits"].get(value, 0) + count
        else:
            attributes[kind][source][label][value] = count
    for entry in duplicates:
        table[entry["source"]]["duplicates"] += 1
    for entry in quarantine:
        table[entry["source"]]["quarantined"] += 1
    for name, row in table.items():
        accounted = row["ingested"] + row["duplicates"] + row["quarantined"]
        if accounted != row["found"]:
            raise ReportError(f"dataset {name}: {row['found']} files found but {accounted} accounted for "
                              f"({row['ingested']} ingested, {row['duplicates']} duplicates, "
                              f"{row['quarantined']} quarantined)")

    shortcuts, warnings = {}, []
    for attribute in SHORTCUT_ATTRIBUTES:
        by_label: Dict[str, Dict[str, int]] = {"real": collections.Counter(), "fake": collections.Counter()}
        for per_label in attributes[attribute].values():
            for label, values in per_label.items():
                by_label[label].update(values)
        accuracy = balanced_accuracy(by_label["real"], by_label["fake"])
        shortcuts[attribute] = {"balanced_accuracy": round(accuracy, 4),
                                "by_label": {k: dict(v) for k, v in by_label.items()},
                                "by_source": {s: dict(v) for s, v in attributes[attribute].items()}}
        if accuracy >= options.shortcut_warning_accuracy:
            warnings.append(
                f"SHORTCUT: {attribute} alone tells real from fake with balanced accuracy "
                f"{accuracy:.2f}; a detector can learn it instead of the image. Save both classes "
                f"alike, or set ingest.reencode_jpeg_quality to re-encode them identically.")
    report = {
        "catalog": catalog.path,
        "dry_run": dry_run,
        "options": dataclasses.asdict(options),
        "datasets": table,
        "totals": {k: sum(row[k] for row in table.values())
                   for k in ("found", "ingested", "duplicates", "quarantined")},
        "warnings": warnings,
        "shortcuts": shortcuts,
        "image_modes": {s: dict(v) for s, v in attributes["mode"].items()},
        "exif_orientation": {s: dict(v) for s, v in attributes["exif_orientation"].items()},
        "quarantine": quarantine,
        "duplicates": duplicates,
        "near_duplicates": near_duplicates,
    }
    with tf.io.gfile.GFile(os.path.join(report_dir, REPORT_JSON), "w") as f:
        f.write(json.dumps(report, indent=2, sort_keys=True))
    with tf.io.gfile.GFile(os.path.join(report_dir, REPORT_HTML), "w") as f:
        f.write(_html(report))
    return report


def _html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _distribution(values: Mapping[str, int], top: int = 6) -> str:
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{value} ({count})" for value, count in items[:top])
    return shown + (f", … {len(items) - top} more" if len(items) > top else "")


def _html(report: Mapping[str, Any]) -> str:
    splits = sorted({s for row in report["datasets"].values() for s in row["splits"]})
    datasets = _html_table(
        ["dataset", "label", "found", "ingested", "duplicates", "quarantined"] + splits,
        [[name, row["label"], row["found"], row["ingested"], row["duplicates"], row["quarantined"]]
         + [row["splits"].get(s, 0) for s in splits] for name, row in report["datasets"].items()])
    shortcut_rows = []
    for attribute, entry in report["shortcuts"].items():
        for label, values in entry["by_label"].items():
            shortcut_rows.append([attribute, label, _distribution(values), entry["balanced_accuracy"]])
    per_source_rows = []
    for attribute, entry in report["shortcuts"].items():
        for source, per_label in sorted(entry["by_source"].items()):
            for label, values in per_label.items():
                per_source_rows.append([attribute, source, label, _distribution(values)])
    warnings = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in report["warnings"]) or \
        "<p>No single attribute separates real from fake.</p>"
    quarantine = report["quarantine"]
    quarantine_table = _html_table(["dataset", "file", "reason"],
                                   [[q["source"], q["path"], q["reason"]] for q in quarantine[:_QUARANTINE_SHOWN]])
    more = (f"<p>… and {len(quarantine) - _QUARANTINE_SHOWN} more in {REPORT_JSON}.</p>"
            if len(quarantine) > _QUARANTINE_SHOWN else "")
    duplicates = _html_table(["dropped", "identical to (kept)"],
                             [[d["dropped"], d["kept"]] for d in report["duplicates"][:_QUARANTINE_SHOWN]])
    near = _html_table(["perceptual hash", "files (same split)", "labels"],
                       [[n["perceptual_hash"], ", ".join(n["files"]), ", ".join(n["labels"])]
                        for n in report["near_duplicates"][:_QUARANTINE_SHOWN]])
    totals = report["totals"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fakeface ingestion report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}.warn{{background:#fdd;border:2px solid #c00;
padding:.6em;font-weight:bold}}</style></head><body>
<h1>Ingestion report{' (dry run)' if report['dry_run'] else ''}</h1>
<p>Catalog: {html.escape(report['catalog'])}. {totals['found']} files found: {totals['ingested']} ingested,
{totals['duplicates']} exact duplicates dropped, {totals['quarantined']} quarantined.</p>
<h2>Shortcut guard</h2>{warnings}
{_html_table(["attribute", "label", "values (count)", "balanced accuracy from this alone"], shortcut_rows)}
<h2>Datasets</h2>{datasets}
<h2>Per source</h2>{_html_table(["attribute", "source", "label", "values (count)"], per_source_rows)}
<h2>Quarantined files</h2>{quarantine_table}{more}
<h2>Exact duplicates</h2>{duplicates}
<h2>Same picture, different bytes (near-duplicates, kept in one split)</h2>{near}
</body></html>
"""
