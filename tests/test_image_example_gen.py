"""ImageExampleGen: its executor end to end on a small messy folder, and its driver."""

import hashlib
import io
import os

import pytest
import tensorflow as tf
import yaml
from PIL import Image
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from fakeface import catalog as catalog_lib
from fakeface import features
from fakeface.components.image_example_gen import driver, executor
from fakeface.components.image_example_gen.component import ImageExampleGen

SPLITS = {"train": 56, "eval": 24, "test": 20}


def _jpeg(color, size=(24, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _png(color, size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def messy_catalog(tmp_path):
    """Two datasets: clean images, a nested folder, a duplicate and two bad files."""
    real, fake = tmp_path / "real", tmp_path / "fake" / "nested"
    real.mkdir()
    fake.mkdir(parents=True)
    files = {
        real / "a.jpg": _jpeg((200, 10, 10)),
        real / "b.png": _png((10, 200, 10)),
        real / "c.jpg": _jpeg((10, 10, 200)),
        fake / "d.jpg": _jpeg((90, 90, 90)),
        fake / "e.png": _png((250, 250, 0)),
        fake / "copy_of_a.jpg": _jpeg((200, 10, 10)),  # byte-identical to real/a.jpg
        fake / "broken.jpg": _jpeg((1, 2, 3))[:40],  # truncated
        real / "notes.txt": b"not an image",
    }
    for path, data in files.items():
        path.write_bytes(data)
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump({"datasets": [
        {"name": "Real", "location": "real", "label": "real", "generator": "camera", "shot": "close-up"},
        {"name": "Fake", "location": "fake", "label": "fake", "generator": "StyleGAN2", "shot": "wide"},
    ]}))
    return catalog_path, files


def _run_executor(catalog_path, output_dir):
    component = ImageExampleGen(str(catalog_path), SPLITS)
    examples = standard_artifacts.Examples()
    examples.uri = str(output_dir)
    exec_properties = {
        standard_component_specs.INPUT_BASE_KEY: os.path.dirname(catalog_path),
        standard_component_specs.INPUT_CONFIG_KEY: component.exec_properties[
            standard_component_specs.INPUT_CONFIG_KEY],
        standard_component_specs.OUTPUT_CONFIG_KEY: component.exec_properties[
            standard_component_specs.OUTPUT_CONFIG_KEY],
    }
    executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    by_split = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
        pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
        dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
        by_split[split] = [tf.train.Example.FromString(r.numpy()) for r in dataset]
    return by_split


def _value(example, name):
    feature = example.features.feature[name]
    return feature.int64_list.value[0] if feature.int64_list.value else feature.bytes_list.value[0]


def test_executor_ingests_good_files_once_and_drops_bad_ones(messy_catalog, tmp_path):
    catalog_path, files = messy_catalog
    by_split = _run_executor(catalog_path, tmp_path / "out")

    assert sorted(by_split) == sorted(SPLITS)
    examples = [e for split in by_split.values() for e in split]
    # 8 files: 5 distinct good images + 1 byte-identical copy + 2 bad files.
    assert len(examples) == 5
    hashes = [_value(e, features.CONTENT_HASH).decode() for e in examples]
    assert len(set(hashes)) == 5

    for example in examples:
        data = _value(example, features.IMAGE_BYTES)
        assert _value(example, features.CONTENT_HASH).decode() == hashlib.sha256(data).hexdigest()
        source = _value(example, features.SOURCE).decode()
        relative = _value(example, features.RELATIVE_PATH).decode()
        root = catalog_path.parent / ("real" if source == "Real" else "fake")
        # The original bytes, never re-encoded.
        assert (root / relative).read_bytes() == data
        assert _value(example, features.LABEL) == (features.REAL if source == "Real" else features.FAKE)
        assert _value(example, features.SHOT).decode() == ("close-up" if source == "Real" else "wide")
        image = Image.open(io.BytesIO(data))
        assert _value(example, features.IMAGE_FORMAT).decode() == image.format
        assert (_value(example, features.WIDTH), _value(example, features.HEIGHT)) == image.size

    relative_paths = {_value(e, features.RELATIVE_PATH).decode() for e in examples}
    assert "nested/d.jpg" in relative_paths
    # Of the identical pair, the copy kept is the first by (source, path).
    assert "nested/copy_of_a.jpg" in relative_paths and "a.jpg" not in relative_paths


def test_split_follows_content_not_path(messy_catalog, tmp_path):
    """Renaming a file does not move it between splits: the split comes from its content."""
    catalog_path, _ = messy_catalog
    first = _run_executor(catalog_path, tmp_path / "first")
    os.rename(catalog_path.parent / "real" / "c.jpg", catalog_path.parent / "real" / "renamed.jpg")
    second = _run_executor(catalog_path, tmp_path / "second")

    def split_of(by_split):
        return {_value(e, features.CONTENT_HASH): split for split, es in by_split.items() for e in es}

    assert split_of(first) == split_of(second)


def test_component_splits_by_content_hash():
    component = ImageExampleGen("/data/catalog.yaml", SPLITS)
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(component.exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    assert output_config.split_config.partition_feature_name == features.CONTENT_HASH
    assert [(s.name, s.hash_buckets) for s in output_config.split_config.splits] == list(SPLITS.items())
    assert component.exec_properties[standard_component_specs.INPUT_BASE_KEY] == "/data"


def test_fingerprint_changes_with_any_dataset_file(messy_catalog):
    catalog_path, files = messy_catalog
    before = driver.catalog_fingerprint(str(catalog_path))
    assert driver.catalog_fingerprint(str(catalog_path)) == before

    (catalog_path.parent / "fake" / "nested" / "new.png").write_bytes(_png((1, 1, 1)))
    added = driver.catalog_fingerprint(str(catalog_path))
    assert added != before

    touched_path = catalog_path.parent / "real" / "a.jpg"
    stat = touched_path.stat()
    os.utime(touched_path, (stat.st_atime, stat.st_mtime + 10))
    assert driver.catalog_fingerprint(str(catalog_path)) != added


def test_empty_dataset_is_an_error_before_any_work(messy_catalog):
    catalog_path, _ = messy_catalog
    (catalog_path.parent / "empty").mkdir()
    data = yaml.safe_load(catalog_path.read_text())
    data["datasets"].append({"name": "Empty", "location": "empty", "label": "fake",
                             "generator": "PGGAN", "shot": "close-up"})
    catalog_path.write_text(yaml.safe_dump(data))
    with pytest.raises(catalog_lib.CatalogError, match=r"catalog\.yaml.*'Empty' has no files"):
        driver.catalog_fingerprint(str(catalog_path))
