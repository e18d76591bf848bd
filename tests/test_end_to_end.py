"""The whole pipeline, run twice by the local runner on a few dozen small images."""

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakeface import features, sample_data

pytestmark = pytest.mark.slow

NODES = {"ImageExampleGen", "StatisticsGen", "CuratedSchemaGen", "ExampleValidator", "ServedStatistics",
         "DistributionValidator", "DataValidation", "Transform", "Trainer", "ServedModel", "Evaluator",
         "EvaluationReport", "Pusher"}


def test_every_step_ran_and_is_recorded_in_ml_metadata(pipeline_runs):
    _, first, _ = pipeline_runs
    assert set(first.executions) == NODES
    assert all(state == "COMPLETE" for state in first.executions.values()), first.executions
    assert first.blessed and first.pushed


def test_a_schema_conforming_catalog_passes_the_gate_and_its_model_carries_its_statistics(pipeline_runs):
    from fakeface.components.data_validation import executor as data_validation

    _, first, _ = pipeline_runs
    assert not first.validation_blocking and not first.validation_warnings
    validation = data_validation.read_validation(os.path.dirname(first.validation_report))
    # Nothing was served before the first run: the schema was checked, drift could not be.
    assert validation["checked"][0].startswith("schema: ") and "drift: not checked" in validation["checked"][1]
    assert "<h2>Data validation</h2>" in open(first.validation_report, encoding="utf-8").read()
    # What the next run's drift check compares with.
    statistics = os.path.join(first.pushed_destination, "assets.extra", "statistics")
    assert sorted(os.listdir(statistics)) == ["Split-eval", "Split-test", "Split-train"]


def test_unchanged_rerun_reuses_every_cached_result(pipeline_runs):
    _, first, second = pipeline_runs
    assert second.run_id != first.run_id
    assert second.executions == {n: "CACHED" for n in NODES}
    assert second.pushed_destination == first.pushed_destination


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def test_pushed_model_scores_raw_encoded_images_of_any_size(pipeline_runs):
    config, first, _ = pipeline_runs
    model = tf.saved_model.load(first.pushed_destination)
    rng = np.random.default_rng(0)
    batch = [
        sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 32, seed=9)),
        _encode(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8), "PNG"),
        _encode(rng.integers(0, 255, (20, 20), dtype=np.uint8), "PNG"),  # grayscale
    ]
    outputs = model.signatures["serving_default"](image_bytes=tf.constant(batch))
    probability = outputs[features.FAKE_PROBABILITY].numpy()
    assert probability.shape == (3,)
    assert np.all((probability >= 0) & (probability <= 1))
    # The threshold the Trainer chose on the eval split travels with the model.
    with open(f"{first.pushed_destination}/assets.extra/training.json") as f:
        decision = json.load(f)["decision"]
    assert decision["method"] == "calibrated on the eval split"
    assert decision["eval_false_positive_rate"] <= config.evaluator.target_fpr
    threshold = np.float32(decision["threshold"])
    np.testing.assert_array_equal(outputs[features.THRESHOLD].numpy(), [threshold] * 3)
    np.testing.assert_array_equal(outputs[features.IS_FAKE].numpy(), probability > threshold)
    np.testing.assert_array_equal(outputs[features.DECISION_SCORE].numpy() > 0.5, probability > threshold)
    assert all(v for v in outputs[features.MODEL_VERSION].numpy())

    # The same image as a tf.Example through the second signature scores the same.
    example = tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_BYTES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[batch[0]]))}))
    by_example = model.signatures["serving_examples"](examples=tf.constant([example.SerializeToString()]))
    np.testing.assert_allclose(by_example[features.FAKE_PROBABILITY].numpy(), probability[:1], rtol=1e-5)


def test_pushed_model_scores_no_bytes_that_are_not_an_image_and_says_why(pipeline_runs):
    _, first, _ = pipeline_runs
    model = tf.saved_model.load(first.pushed_destination)
    image = sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 32, seed=9))
    outputs = model.signatures["serving_default"](image_bytes=tf.constant([b"definitely not an image", image]))
    probability = outputs[features.FAKE_PROBABILITY].numpy()
    assert np.isnan(probability[0]) and not outputs[features.IS_FAKE].numpy()[0]
    assert outputs[features.IMAGE_ERROR].numpy()[0].decode() == "not a JPEG, PNG, GIF or BMP image"
    # The image beside it is scored as if it had travelled alone.
    alone = model.signatures["serving_default"](image_bytes=tf.constant([image]))
    assert outputs[features.IMAGE_ERROR].numpy()[1] == b""
    assert probability[1] == pytest.approx(alone[features.FAKE_PROBABILITY].numpy()[0], abs=1e-6)


def test_serving_applies_no_augmentation(pipeline_runs):
    """Trained with random flips, blur and JPEG, yet serving is deterministic and equals the bare model."""
    from fakeface.components.transform import preprocessing

    config, first, _ = pipeline_runs
    assert config.trainer.augment_flip and config.trainer.augment_blur_jpeg_probability > 0
    image = sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[5], 1, 32, seed=4))
    served = tf.saved_model.load(first.pushed_destination).signatures["serving_default"]
    scores = [served(image_bytes=tf.constant([image]))[features.FAKE_PROBABILITY].numpy()[0]
              for _ in range(5)]
    assert len(set(scores)) == 1
    keras_model = tf.keras.models.load_model(first.pushed_destination)
    pixels, _ = preprocessing.decode_and_resize(tf.constant([image]), 32)
    direct = keras_model(pixels, training=False)
    assert float(direct.numpy().ravel()[0]) == pytest.approx(float(scores[0]), abs=1e-6)
    graph = served.graph.as_graph_def()
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    assert not {op for op in ops if "Random" in op or op in ("EncodeJpeg", "ImageProjectiveTransformV3")}
