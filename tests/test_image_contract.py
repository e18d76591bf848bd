"""One image contract from ingestion to serving, and no file that can break a run.

The corpus (tests/image_corpus.py) is made here, seeded: well-formed images of
every kind, the BMPs TensorFlow misreads, truncations, header mutations,
formats TensorFlow does not read, and entries that are not regular files.
"""

import json
import os
import signal
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

import image_corpus
from fakeface import features, images, sample_data
from fakeface.components.image_example_gen import executor, ingest, sandbox
from fakeface.components.image_example_gen.component import ImageExampleGen
from fakeface.components.image_example_gen.records import FileRecord, FileRef, Quarantined
from fakeface.components.transform import preprocessing
from fakeface.pipeline.config import IngestConfig
from fakeface.serving import classify

SPLITS = {"train": 56, "eval": 24, "test": 20}
# A reason from ingestion's own rules (ingest.min_side), not the decoder's: such files decode.
INGESTION_ONLY = "side under"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "files"
    return root, image_corpus.write(root, seed=7)


def _decoded(data: bytes) -> np.ndarray:
    return preprocessing.decode_uint8(tf.constant(data)).numpy()


def _refusal(data: bytes) -> str:
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        _decoded(data)
    return e.value.message


def test_the_decoder_takes_every_image_with_the_pixels_a_viewer_sees(corpus):
    root, entries = corpus
    taken = {name: entry for name, entry in entries.items() if entry.kind == "image"}
    assert len(taken) >= 20
    for name, entry in taken.items():
        pixels = _decoded((root / name).read_bytes()).astype(int)
        assert pixels.shape == entry.pixels.shape, name
        error = np.abs(pixels - entry.pixels)
        if entry.exact:  # lossless formats: exactly the viewer's pixels; palettes expanded, 16 bits scaled
            assert error.max() == 0, name
        else:  # JPEG: libjpeg's IDCT and chroma up-sampling differ a little between decoders
            assert error.mean() < 2 and error.max() < 24, (name, error.mean(), error.max())


def test_animations_give_their_first_frame_everywhere(corpus):
    root, entries = corpus
    for name in ("animated.gif", "animated.png", "camera.mpo"):
        data = (root / name).read_bytes()
        assert images.read_header(data).frames == 2
        assert np.abs(_decoded(data).astype(int) - entries[name].pixels).mean() < 2, name


def test_the_decoder_refuses_what_it_cannot_read_or_would_misread(corpus):
    root, entries = corpus
    refused = {n: e for n, e in entries.items() if e.kind == "refused" and INGESTION_ONLY not in e.reason}
    for name, entry in refused.items():
        message = _refusal((root / name).read_bytes())
        if name.endswith(".bmp") or name == "bomb.png":
            assert entry.reason in message, (name, message)


def test_header_pixels_reads_os2_bmp_headers():
    pixels = np.zeros((23, 37, 3), np.uint8)
    assert int(preprocessing.header_pixels(tf.constant(image_corpus.bmp(pixels, header_size=12)))) == 23 * 37
    assert int(preprocessing.header_pixels(tf.constant(image_corpus.bmp(pixels, top_down=True)))) == 23 * 37


def test_read_header_never_raises_and_describes_what_it_can(corpus):
    root, entries = corpus
    for name in entries:
        if entries[name].kind != "other" and (root / name).is_file():
            assert isinstance(images.read_header((root / name).read_bytes()), images.Header)
    assert images.read_header((root / "jpeg_rgb.jpg").read_bytes()).jpeg_quality == 90
    assert images.read_header((root / "jpeg_cmyk.jpg").read_bytes()).mode == "CMYK"
    assert images.format_of((root / "camera.mpo").read_bytes()) == "JPEG"
    assert images.format_of((root / "scan.tiff").read_bytes()) == ""


def _catalog(tmp_path, datasets):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"datasets": [
        {"name": name, "location": str(location), "label": label, "generator": "camera" if label == "real"
         else "StyleGAN2", "shot": "close-up"} for name, location, label in datasets]}))
    return str(path)


def _fakes(folder, count=6, seed=1):
    folder.mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng(seed * 1000 + i)
        (folder / f"{i}.png").write_bytes(image_corpus.encode(image_corpus.picture(rng), "PNG"))
    return folder


def _ingest(catalog_path, out_dir, **config):
    component = ImageExampleGen(catalog_path, SPLITS, config)
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, component.exec_properties)
    stored = []
    for split in artifact_utils.decode_split_names(examples.split_names):
        pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
        stored += [tf.train.Example.FromString(r.numpy()) for r in
                   tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")]
    with open(os.path.join(out_dir, executor.REPORT_DIR_NAME, ingest.REPORT_JSON)) as f:
        return stored, json.load(f)


@pytest.fixture(scope="module")
def corpus_run(corpus, tmp_path_factory):
    root, entries = corpus
    work = tmp_path_factory.mktemp("corpus_run")
    catalog_path = _catalog(work, [("Corpus", root, "real"), ("Fakes", _fakes(work / "fakes"), "fake")])
    started = time.monotonic()
    stored, report = _ingest(catalog_path, work / "out")
    return root, entries, stored, report, time.monotonic() - started


def _string(example, name):
    return example.features.feature[name].bytes_list.value[0]


def test_every_corpus_file_is_ingested_and_decodable_or_quarantined_with_one_line(corpus_run):
    root, entries, stored, report, _ = corpus_run
    corpus = report["datasets"]["Corpus"]
    assert corpus["found"] == len(entries)
    assert corpus["found"] == corpus["ingested"] + corpus["duplicates"] + corpus["quarantined"]
    for example in stored:  # every example decodes with the model's decoder
        _decoded(_string(example, features.IMAGE_BYTES))
    outcome = {os.path.relpath(q["path"], root): q["reason"] for q in report["quarantine"]
               if q["source"] == "Corpus"}
    ingested = {_string(e, features.RELATIVE_PATH).decode() for e in stored
                if _string(e, features.SOURCE) == b"Corpus"}
    duplicates = {d["dropped"].split("/", 1)[1] for d in report["duplicates"]}
    assert not (set(outcome) & ingested) and set(outcome) | ingested | duplicates == set(entries)
    for reason in outcome.values():
        assert reason and "\n" not in reason and len(reason) <= 300
    for name, entry in entries.items():
        if entry.kind == "image":
            assert name in ingested or name in duplicates, (name, outcome.get(name))
        elif entry.kind in ("refused", "other"):
            assert entry.reason in outcome[name], (name, outcome[name])
    assert duplicates == {"png_rgb.png"}  # its copy comes first by path, and is kept
    assert report["frames"]["Corpus"]["real"]["2"] == 3  # animated GIF and PNG, the MPO: first frames
    assert sum(name.startswith("mutated/") for name in ingested) > 0  # the fuzz left some decodable files


def test_serving_refuses_exactly_what_ingestion_quarantines(corpus_run):
    root, entries, _, report, _ = corpus_run
    quarantined = {os.path.relpath(q["path"], root): q["reason"] for q in report["quarantine"]
                   if q["source"] == "Corpus"}
    for name, entry in entries.items():
        if entry.kind == "other":
            continue
        data = (root / name).read_bytes()
        try:
            _decoded(data)
            decodes = True
        except tf.errors.InvalidArgumentError:
            decodes = False
        refused = name in quarantined and INGESTION_ONLY not in quarantined[name]
        assert decodes != refused, (name, quarantined.get(name))


def test_classify_with_rotations_refuses_what_the_model_refuses(corpus):
    root, _ = corpus
    with pytest.raises(images.BadImage, match="colour palette"):
        classify.rotations((root / "bmp_pillow_P.bmp").read_bytes(), [-15, 15])
    rotated = classify.rotations((root / "png_16bit.png").read_bytes(), [15])
    assert _decoded(rotated[0]).shape == (image_corpus.SIZE[1], image_corpus.SIZE[0], 3)


def _big_png(side: int) -> bytes:
    """A PNG of side x side zero pixels: a few hundred bytes that take a while to decode."""
    return image_corpus.encode(image_corpus.Image.new("RGB", (side, side)), "PNG")


@pytest.mark.slow
def test_a_decoder_over_the_time_limit_is_stopped_and_only_its_file_quarantined(tmp_path):
    dataset = _fakes(tmp_path / "real", count=3, seed=2)
    (dataset / "slow.png").write_bytes(_big_png(6000))
    catalog_path = _catalog(tmp_path, [("Real", dataset, "real"), ("Fake", _fakes(tmp_path / "fake"), "fake")])
    _, report = _ingest(catalog_path, tmp_path / "out", decode_timeout_seconds=0.25)
    [entry] = report["quarantine"]
    assert entry["path"].endswith("slow.png")
    assert entry["reason"].startswith("decoding did not finish within 0.25 s")
    assert report["totals"] == {"found": 10, "ingested": 9, "duplicates": 0, "quarantined": 1}


@pytest.mark.slow
def test_a_decoder_that_dies_costs_no_file_that_a_fresh_one_reads(tmp_path):
    folder = _fakes(tmp_path / "files", count=3, seed=3)
    refs = [FileRef("Real", str(path), path.name, path.stat().st_size) for path in sorted(folder.iterdir())]
    box = sandbox.Sandbox(IngestConfig())
    try:
        assert all(isinstance(r, FileRecord) for r in box.inspect(refs[:1]))
        # As the kernel's OOM killer would.
        os.kill(box._process.pid, signal.SIGKILL)  # pylint: disable=protected-access
        results = box.inspect(refs)
    finally:
        box.close()
    assert [r.path for r in results] == [r.path for r in refs]
    assert all(isinstance(r, FileRecord) for r in results), [r for r in results if isinstance(r, Quarantined)]


@pytest.mark.slow
def test_a_full_run_on_a_catalog_mixing_the_corpus_with_sample_fakes_ends_normally(corpus, tmp_path):
    from fakeface.cli import main

    root, _ = corpus
    sample_catalog = yaml.safe_load(open(sample_data.generate(str(tmp_path / "sample"), per_source=12, size=32,
                                                              seed=4)))
    fakes = [d for d in sample_catalog["datasets"] if d["label"] == "fake"]
    for dataset in fakes:
        dataset["location"] = str(tmp_path / "sample" / dataset["location"])
        dataset.pop("group", None)  # their real partners are not in this catalog
    catalog_path = tmp_path / "mixed.yaml"
    catalog_path.write_text(yaml.safe_dump({"datasets": [
        {"name": "Corpus", "location": str(root), "label": "real", "generator": "camera", "shot": "close-up"}]
        + fakes}))
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "runs_root": str(tmp_path / "runs"), "catalog": str(catalog_path), "transform": {"image_size": 32},
        "trainer": {"epochs": 1, "batch_size": 8}}))
    assert main(["run", "--config", str(config_path)]) == 0

    from fakeface.pipeline import results

    summary = results.latest_run(str(tmp_path / "runs" / "metadata.sqlite"), "fakeface")
    assert summary.executions and all(state in ("COMPLETE", "CACHED") for state in summary.executions.values())
