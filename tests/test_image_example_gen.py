"""ImageExampleGen: the executor on a messy folder, its report, splits and driver."""

import hashlib
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from fakeface import catalog as catalog_lib
from fakeface import features, sample_data
from fakeface.components.image_example_gen import driver, executor, ingest
from fakeface.components.image_example_gen.component import ImageExampleGen

SPLITS = {"train": 56, "eval": 24, "test": 20}


def _picture(seed, size=(24, 20)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _smooth_picture(seed, size=(24, 20)):
    """A picture with structure at the perceptual hash's scale, as photographs have (noise has none)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    channels = [np.sin(rng.uniform(1, 6) * x + rng.uniform(1, 6) * y + rng.uniform(0, 6)) for _ in range(3)]
    return Image.fromarray((np.stack(channels, axis=-1) * 120 + 128).astype(np.uint8))


def _encode(image, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_claiming(width, height) -> bytes:
    """A PNG whose header (valid CRC) claims a size it does not hold: a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _write_catalog(path, datasets):
    path.write_text(yaml.safe_dump({"datasets": datasets}))
    return path


# What the messy catalog holds, file by file, with what must become of it.
ACCEPTED = {"real/gray.jpg", "real/cmyk.jpg", "real/palette.png", "real/sixteen_bit.png", "real/alpha.png",
            "real/rotated.jpg", "real/animated.gif", "fake/nested/d.jpg", "fake/nested/e.png"}
# Of identical files the first by (dataset name, path) is kept.
DUPLICATE = {"fake/nested/d_copy.jpg": "fake/nested/d.jpg"}
QUARANTINED = {
    # Copies under the other label, byte for byte and re-encoded: no label wins.
    "real/a.jpg": "label conflict: byte-identical to fake Fake/nested/copy_of_a.jpg",
    "fake/nested/copy_of_a.jpg": "label conflict: byte-identical to real Real/a.jpg",
    "real/b.png": "label conflict: the same picture (near-duplicate) as fake Fake/nested/b_again.jpg",
    "fake/nested/b_again.jpg": "label conflict: the same picture (near-duplicate) as real Real/b.png",
    "real/empty.jpg": "empty file",
    "real/truncated.jpg": "InvalidArgumentError: ",
    "real/notes.txt": "not an image",
    "real/scan.tiff": "format TIFF is not taken",
    "real/bomb.png": "more than 64000000 pixels by its header",
    "real/tiny.png": "side under 16 pixels",
    "fake/nested/dangling.jpg": "broken link",
}


def _write_messy_catalog(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake" / "nested").mkdir(parents=True)
    a, b = _picture(1), _smooth_picture(2, size=(64, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    files = {
        "real/a.jpg": _encode(a, "JPEG", quality=90),
        "real/b.png": _encode(b, "PNG"),
        "real/gray.jpg": _encode(_picture(3).convert("L"), "JPEG"),
        "real/cmyk.jpg": _encode(_picture(4).convert("CMYK"), "JPEG"),
        "real/palette.png": _encode(_picture(5).convert("P"), "PNG"),
        "real/sixteen_bit.png": _encode(Image.fromarray(
            (np.arange(480).reshape(20, 24) * 130).astype(np.uint16)), "PNG"),
        "real/alpha.png": _encode(_picture(6).convert("RGBA"), "PNG"),
        "real/rotated.jpg": _encode(_picture(7), "JPEG", exif=exif.tobytes()),
        "real/empty.jpg": b"",
        "real/truncated.jpg": _encode(_picture(8), "JPEG")[:200],
        "real/notes.txt": b"not an image at all",
        "real/scan.tiff": _encode(_picture(9), "TIFF"),
        "real/animated.gif": _encode(_picture(10).convert("P"), "GIF", save_all=True,
                                     append_images=[_picture(11).convert("P")]),
        "real/bomb.png": _png_claiming(100_000, 100_000),
        "real/tiny.png": _encode(_picture(12, size=(8, 8)), "PNG"),
        "fake/nested/d.jpg": _encode(_picture(13), "JPEG"),
        "fake/nested/d_copy.jpg": _encode(_picture(13), "JPEG"),
        "fake/nested/e.png": _encode(_picture(14), "PNG"),
        "fake/nested/copy_of_a.jpg": _encode(a, "JPEG", quality=90),
        "fake/nested/b_again.jpg": _encode(b, "JPEG", quality=95),  # same picture, other bytes
    }
    for relative, data in files.items():
        (tmp_path / relative).write_bytes(data)
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "fake" / "nested" / "dangling.jpg")
    catalog_path = _write_catalog(tmp_path / "catalog.yaml", [
        {"name": "Real", "location": "real", "label": "real", "generator": "camera", "shot": "close-up"},
        {"name": "Fake", "location": "fake", "label": "fake", "generator": "StyleGAN2", "shot": "wide"},
    ])
    assert set(ACCEPTED) | set(DUPLICATE) | set(QUARANTINED) == set(files) | {"fake/nested/dangling.jpg"}
    return catalog_path


def _run_executor(catalog_path, output_dir, **ingest_options):
    component = ImageExampleGen(str(catalog_path), SPLITS, ingest_options)
    examples = standard_artifacts.Examples()
    examples.uri = str(output_dir)
    exec_properties = {key: component.exec_properties[key] for key in (
        standard_component_specs.INPUT_BASE_KEY, standard_component_specs.INPUT_CONFIG_KEY,
        standard_component_specs.OUTPUT_CONFIG_KEY, standard_component_specs.CUSTOM_CONFIG_KEY)}
    executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    by_split = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
        pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
        dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
        by_split[split] = [tf.train.Example.FromString(r.numpy()) for r in dataset]
    with open(os.path.join(output_dir, executor.REPORT_DIR_NAME, ingest.REPORT_JSON)) as f:
        report = json.load(f)
    return by_split, report, examples


def _value(example, name):
    feature = example.features.feature[name]
    value = feature.int64_list.value[0] if feature.int64_list.value else feature.bytes_list.value[0]
    return value if isinstance(value, int) or name == features.IMAGE_BYTES else value.decode()


def _path(example):
    folder = "real" if _value(example, features.SOURCE) == "Real" else "fake"
    return f"{folder}/{_value(example, features.RELATIVE_PATH)}"


@pytest.fixture
def messy_catalog(tmp_path):
    return _write_messy_catalog(tmp_path)


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory):
    """One ingestion of the messy catalog, which the tests that only read its outcome share."""
    folder = tmp_path_factory.mktemp("messy")
    catalog_path = _write_messy_catalog(folder)
    return catalog_path, *_run_executor(catalog_path, folder / "out")


def test_every_file_is_ingested_dropped_as_duplicate_or_quarantined(messy_run):
    catalog_path, by_split, report, artifact = messy_run
    examples = [e for split in by_split.values() for e in split]
    assert {_path(e) for e in examples} == ACCEPTED

    root = str(catalog_path.parent)
    quarantined = {os.path.relpath(q["path"], root): q["reason"] for q in report["quarantine"]}
    assert set(quarantined) == set(QUARANTINED)
    for relative, reason in QUARANTINED.items():
        assert reason in quarantined[relative], (relative, quarantined[relative])
    assert [(d["dropped"], d["kept"]) for d in report["duplicates"]] == [
        ("Fake/nested/d_copy.jpg", "Fake/nested/d.jpg")]

    datasets = report["datasets"]
    assert (datasets["Real"]["found"], datasets["Real"]["ingested"], datasets["Real"]["duplicates"],
            datasets["Real"]["quarantined"]) == (15, 7, 0, 8)
    assert (datasets["Fake"]["found"], datasets["Fake"]["ingested"], datasets["Fake"]["duplicates"],
            datasets["Fake"]["quarantined"]) == (6, 2, 1, 3)
    assert report["totals"] == {"found": 21, "ingested": 9, "duplicates": 1, "quarantined": 11}
    assert artifact.get_int_custom_property("files_quarantined") == 11
    assert os.path.isfile(artifact.get_string_custom_property("ingest_report"))


def test_examples_keep_the_original_bytes_and_describe_them(messy_run):
    catalog_path, by_split, report, _ = messy_run
    for example in (e for split in by_split.values() for e in split):
        data = _value(example, features.IMAGE_BYTES)
        assert (catalog_path.parent / _path(example)).read_bytes() == data
        assert _value(example, features.CONTENT_HASH) == hashlib.sha256(data).hexdigest()
        image = Image.open(io.BytesIO(data))
        assert _value(example, features.IMAGE_FORMAT) == image.format
        assert (_value(example, features.WIDTH), _value(example, features.HEIGHT)) == image.size
        is_fake = _value(example, features.SOURCE) == "Fake"
        assert _value(example, features.LABEL) == (features.FAKE if is_fake else features.REAL)
        assert _value(example, features.SHOT) == ("wide" if is_fake else "close-up")
        assert _value(example, features.GENERATOR) == ("StyleGAN2" if is_fake else "camera")
        quality = _value(example, features.JPEG_QUALITY)
        assert (quality > 0) == (image.format == "JPEG")
        if _path(example) == "fake/nested/d.jpg":
            assert quality == 75  # Pillow's default
    assert report["exif_orientation"]["Real"]["real"]["6"] == 1
    assert report["image_modes"]["Real"]["real"]["CMYK"] == 1
    assert report["frames"]["Real"]["real"]["2"] == 1  # the animated GIF, by its first frame


def test_label_conflicts_are_listed_in_the_report(messy_run):
    catalog_path, _, report, _ = messy_run
    root = str(catalog_path.parent)
    listed = {os.path.relpath(q["path"], root): q["reason"] for q in report["label_conflicts"]}
    assert listed == {path: reason for path, reason in QUARANTINED.items() if reason.startswith("label conflict")}


def test_splits_are_stable_when_a_dataset_grows(messy_catalog, tmp_path):
    first, _, _ = _run_executor(messy_catalog, tmp_path / "first")
    for i in range(20):
        (messy_catalog.parent / "fake" / f"new_{i}.png").write_bytes(_encode(_picture(100 + i), "PNG"))
    second, _, _ = _run_executor(messy_catalog, tmp_path / "second")

    def split_of(by_split):
        return {_value(e, features.CONTENT_HASH): split for split, es in by_split.items() for e in es}

    before, after = split_of(first), split_of(second)
    assert len(after) == len(before) + 20
    assert {h: after[h] for h in before} == before


def test_split_sizes_follow_the_hash_buckets(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    for i in range(150):
        folder = "real" if i % 2 else "fake"
        (tmp_path / folder / f"{i}.png").write_bytes(_encode(_picture(1000 + i, size=(16, 16)), "PNG"))
    catalog_path = _write_catalog(tmp_path / "catalog.yaml", [
        {"name": "R", "location": "real", "label": "real", "generator": "camera", "shot": "close-up"},
        {"name": "F", "location": "fake", "label": "fake", "generator": "PGGAN", "shot": "close-up"}])
    by_split, report, _ = _run_executor(catalog_path, tmp_path / "out")
    shares = {split: len(es) / 150 for split, es in by_split.items()}
    assert shares["train"] == pytest.approx(0.56, abs=0.12)
    assert shares["test"] == pytest.approx(0.20, abs=0.09)
    counted = {s: sum(row["splits"].get(s, 0) for row in report["datasets"].values()) for s in SPLITS}
    assert counted == {split: len(es) for split, es in by_split.items()}


def test_shortcut_guard_warns_when_format_alone_tells_the_classes_apart(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    for i in range(6):
        (tmp_path / "real" / f"{i}.png").write_bytes(_encode(_picture(200 + i), "PNG"))
        (tmp_path / "fake" / f"{i}.jpg").write_bytes(_encode(_picture(300 + i), "JPEG", quality=95))
    catalog_path = _write_catalog(tmp_path / "catalog.yaml", [
        {"name": "Photos", "location": "real", "label": "real", "generator": "camera", "shot": "close-up"},
        {"name": "GAN", "location": "fake", "label": "fake", "generator": "StyleGAN", "shot": "close-up"}])
    _, report, artifact = _run_executor(catalog_path, tmp_path / "out")
    pooled = "SHORTCUT in all datasets pooled: format alone tells real from fake with balanced accuracy 1.00"
    assert any(w.startswith(pooled) for w in report["warnings"])
    assert not any("resolution_bucket alone" in w for w in report["warnings"])  # every image is 24x20
    assert artifact.get_int_custom_property("shortcut_warnings") == len(report["warnings"]) >= 1
    html = (tmp_path / "out" / executor.REPORT_DIR_NAME / ingest.REPORT_HTML).read_text()
    assert pooled in html

    _, reencoded, _ = _run_executor(catalog_path, tmp_path / "reencoded", reencode_jpeg_quality=90)
    assert reencoded["warnings"] == []
    (pooled_format,) = [f for f in reencoded["shortcut_guard"] if f["kind"] == "pooled" and f["attribute"] == "format"]
    assert (pooled_format["real"], pooled_format["fake"]) == ({"JPEG": 6}, {"JPEG": 6})


def test_sample_data_raises_no_shortcut_warning(tmp_path):
    from fakeface import sample_data

    catalog_path = sample_data.generate(str(tmp_path / "data"), per_source=4, size=32)
    _, report, _ = _run_executor(catalog_path, tmp_path / "out")
    assert report["warnings"] == []
    assert report["totals"]["ingested"] == 32


def test_ingestion_warns_about_exactly_the_confounded_group_of_a_mixed_catalog(tmp_path):
    from PIL import PngImagePlugin

    from fakeface import sample_data

    catalog_path = sample_data.generate(str(tmp_path / "data"), per_source=6, size=32)
    for label in ("real", "fake"):
        (tmp_path / "data" / f"confounded_{label}").mkdir()
    text = PngImagePlugin.PngInfo()
    text.add_text("Software", "a generator")
    for i in range(6):  # real camera JPEGs at quality 75 against fake PNGs with a text chunk
        (tmp_path / "data" / "confounded_real" / f"{i}.jpg").write_bytes(
            _encode(_smooth_picture(400 + i, size=(32, 32)), "JPEG", quality=75))
        (tmp_path / "data" / "confounded_fake" / f"{i}.png").write_bytes(
            _encode(_smooth_picture(500 + i, size=(32, 32)), "PNG", pnginfo=text))
    with open(catalog_path, encoding="utf-8") as f:
        catalog = yaml.safe_load(f)
    catalog["datasets"] += [
        {"name": "Confounded_Real", "location": "confounded_real", "label": "real", "generator": "camera",
         "shot": "close-up", "group": "confounded"},
        {"name": "Confounded_Fake", "location": "confounded_fake", "label": "fake", "generator": "StyleGAN",
         "shot": "close-up", "group": "confounded"}]
    mixed = tmp_path / "data" / "mixed.yaml"
    mixed.write_text(yaml.safe_dump(catalog))
    _, report, _ = _run_executor(mixed, tmp_path / "out")
    assert report["warnings"]
    scope = "SHORTCUT in group confounded (real Confounded_Real; fake Confounded_Fake): "
    assert all(w.startswith(scope) for w in report["warnings"]), report["warnings"]
    assert any(w.startswith(scope + "format alone") and "Remedy: ingest.reencode_jpeg_quality." in w
               for w in report["warnings"])
    assert any(w.startswith(scope + "png_text alone") and "Remedy: ingest.strip_metadata." in w
               for w in report["warnings"])
    pooled = [f for f in report["shortcut_guard"] if f["kind"] == "pooled" and f["attribute"] == "format"]
    assert pooled[0]["balanced_accuracy"] < 0.9  # diluted: the pooled figure alone would miss it

    # Both remedies: the same catalog passes.
    _, remedied, _ = _run_executor(mixed, tmp_path / "remedied", reencode_jpeg_quality=90, strip_metadata=True)
    assert remedied["warnings"] == []


def test_limit_takes_the_same_files_every_time(messy_catalog, tmp_path):
    data = yaml.safe_load(messy_catalog.read_text())
    data["datasets"][0]["limit"] = 4
    messy_catalog.write_text(yaml.safe_dump(data))
    _, first, _ = _run_executor(messy_catalog, tmp_path / "first")
    _, second, _ = _run_executor(messy_catalog, tmp_path / "second")
    assert first["datasets"]["Real"]["found"] == 4
    assert first["datasets"] == second["datasets"]


def test_component_splits_by_perceptual_hash():
    component = ImageExampleGen("/data/catalog.yaml", SPLITS, {"min_side": 32})
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(component.exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    assert output_config.split_config.partition_feature_name == features.PERCEPTUAL_HASH
    assert [(s.name, s.hash_buckets) for s in output_config.split_config.splits] == list(SPLITS.items())
    assert component.exec_properties[standard_component_specs.INPUT_BASE_KEY] == "/data"
    assert executor.ingest_config(component.exec_properties).min_side == 32


def test_fingerprint_changes_with_any_dataset_file(messy_catalog):
    before = driver.catalog_fingerprint(str(messy_catalog))
    assert driver.catalog_fingerprint(str(messy_catalog)) == before

    (messy_catalog.parent / "fake" / "nested" / "new.png").write_bytes(_encode(_picture(50), "PNG"))
    added = driver.catalog_fingerprint(str(messy_catalog))
    assert added != before

    touched = messy_catalog.parent / "real" / "gray.jpg"
    stat = touched.stat()
    os.utime(touched, (stat.st_atime, stat.st_mtime + 10))
    assert driver.catalog_fingerprint(str(messy_catalog)) != added


def test_empty_dataset_is_an_error_before_any_work(messy_catalog):
    (messy_catalog.parent / "empty").mkdir()
    data = yaml.safe_load(messy_catalog.read_text())
    data["datasets"].append({"name": "Empty", "location": "empty", "label": "fake",
                             "generator": "PGGAN", "shot": "close-up"})
    messy_catalog.write_text(yaml.safe_dump(data))
    with pytest.raises(catalog_lib.CatalogError, match=r"catalog\.yaml.*'Empty' has no files"):
        driver.catalog_fingerprint(str(messy_catalog))


def _noise_catalog(root, count, side=512):
    """`count` JPEGs of noise, which does not compress: about 0.3 MB each, real and fake alike."""
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng(5000 + i)
        image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        (root / ("real" if i % 2 else "fake") / f"{i}.jpg").write_bytes(_encode(image, "JPEG", quality=95))
    return _write_catalog(root / "catalog.yaml", [
        {"name": "R", "location": "real", "label": "real", "generator": "camera", "shot": "close-up"},
        {"name": "F", "location": "fake", "label": "fake", "generator": "PGGAN", "shot": "close-up"}])


def _peak_ingest_rss(catalog_path, out_dir) -> int:
    """`fakeface ingest`'s peak resident memory as the kernel records it, what /usr/bin/time reports:
    the high-water mark of its process or of its largest child, whichever is larger. Exact, where
    sampling the memory misses short peaks (by up to 40 MB between runs of the same input)."""
    import subprocess
    import sys

    command = [os.path.join(os.path.dirname(sys.executable), "fakeface"), "ingest", str(catalog_path), str(out_dir)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0
    return usage.ru_maxrss * 1024  # KiB on Linux


@pytest.mark.slow
def test_ingestion_memory_does_not_grow_with_the_bytes_ingested(tmp_path):
    small = _noise_catalog(tmp_path / "small", 60)
    large = _noise_catalog(tmp_path / "large", 400)
    added = sum(f.stat().st_size for f in (tmp_path / "large").rglob("*.jpg")) - sum(
        f.stat().st_size for f in (tmp_path / "small").rglob("*.jpg"))
    assert added > 80e6  # carried through memory, as it once was, this would add 3.7 times as much
    growth = _peak_ingest_rss(large, tmp_path / "large_out") - _peak_ingest_rss(small, tmp_path / "small_out")
    assert growth < 40e6, f"peak RSS grew by {growth / 1e6:.0f} MB for {added / 1e6:.0f} MB more images"


@pytest.mark.slow
def test_ingesting_16000_files_peaks_under_100_mb_above_2000(tmp_path):
    # The aim at its own file counts, on 32 px images (their bytes are the test
    # above's). Each file costs ingestion a small record until the near-duplicate
    # step has seen them all: 59 MB more here; 133 MB when stage 3 still grouped
    # the inspected records and listed every file's attributes for the guard.
    small = sample_data.generate(str(tmp_path / "small"), per_source=250, size=32)
    large = sample_data.generate(str(tmp_path / "large"), per_source=2000, size=32)
    growth = _peak_ingest_rss(large, tmp_path / "large_out") - _peak_ingest_rss(small, tmp_path / "small_out")
    assert growth < 100e6, f"peak RSS grew by {growth / 1e6:.0f} MB from 2,000 to 16,000 files"


def _fakeface(*args):
    import sys

    return [os.path.join(os.path.dirname(sys.executable), "fakeface"), *map(str, args)]


@pytest.mark.slow
def test_ingest_refuses_a_folder_in_use_and_an_interrupted_run_leaves_nothing(tmp_path):
    import signal
    import subprocess
    import time

    catalog_path = _noise_catalog(tmp_path / "data", 200, side=256)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    refused = subprocess.run(_fakeface("ingest", catalog_path, out), capture_output=True, text=True)
    assert refused.returncode == 2
    assert f"{out} exists and is not an empty folder" in refused.stderr.splitlines()[-1]
    assert os.listdir(out) == ["notes.txt"]

    (out / "notes.txt").unlink()
    run = subprocess.Popen(_fakeface("ingest", catalog_path, out), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    while not list(tmp_path.glob(".out.partial-*")) and run.poll() is None:
        time.sleep(0.05)
    time.sleep(2)  # well into the run: Beam and the decoder process are starting
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate()
    assert run.returncode == 130, stderr[-2000:]
    assert os.listdir(out) == [] and not list(tmp_path.glob(".out.partial-*"))

    assert subprocess.run(_fakeface("ingest", catalog_path, out), capture_output=True).returncode == 0
    assert sorted(os.listdir(out)) == ["Split-eval", "Split-test", "Split-train", "ingest_report"]
