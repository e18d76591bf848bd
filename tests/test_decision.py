"""The shipped decision: the threshold chosen on the eval split, and the decision score."""

import numpy as np
import pytest
import tensorflow as tf

from fakeface import features
from fakeface.components.trainer import model as model_lib
from fakeface.components.trainer import training


@pytest.mark.parametrize("threshold", [0.02, 0.3, 0.5, 0.93, 0.999])
def test_decision_score_is_above_one_half_exactly_when_the_model_says_fake(threshold):
    t = float(np.float32(threshold))
    around = np.array([np.nextafter(np.float32(t), np.float32(0)), np.float32(t),
                       np.nextafter(np.float32(t), np.float32(1))], np.float32)
    probabilities = np.concatenate([np.linspace(0, 1, 101, dtype=np.float32), around])
    score = model_lib.decision_score(tf.constant(probabilities), t).numpy()
    np.testing.assert_array_equal(score > 0.5, probabilities > np.float32(t))
    # Strictly increasing: every ranking metric (AUC, AP) is that of the probability.
    order = np.argsort(probabilities, kind="stable")
    assert np.all(np.diff(score[order]) >= 0)
    assert np.all(np.diff(score[order])[np.diff(probabilities[order]) > 0] > 0)
    assert score.min() >= 0.0 and score.max() <= 1.0


class _Constant(tf.keras.Model):
    """Scores each image by its first pixel: a model whose outputs a test sets."""

    def call(self, images, training=False):
        return tf.reshape(images[:, 0, 0, 0], [-1, 1])


def _evaluation(labels, scores):
    images = np.zeros((len(scores), 2, 2, 3), np.float32)
    images[:, 0, 0, 0] = scores
    return tf.data.Dataset.from_tensor_slices((images, np.reshape(labels, [-1, 1]))).batch(4)


def test_threshold_is_calibrated_on_the_eval_split_for_the_target_false_positive_rate():
    rng = np.random.default_rng(0)
    real, fake = rng.beta(2, 5, 200).astype(np.float32), rng.beta(5, 2, 100).astype(np.float32)
    labels = np.r_[np.zeros(200, int), np.ones(100, int)]
    config = {"decision_threshold": 0.5, "calibrate_threshold": True, "target_fpr": 0.05}
    decision = training.choose_threshold(_Constant(), _evaluation(labels, np.r_[real, fake]), config)
    assert decision["method"] == "calibrated on the eval split"
    assert np.mean(real > decision["threshold"]) <= 0.05
    assert decision["eval_false_positive_rate"] == pytest.approx(np.mean(real > decision["threshold"]))
    assert decision["eval_real_images"] == 200 and decision["eval_fake_images"] == 100
    assert decision["threshold"] != 0.5


def test_fixed_threshold_when_calibration_is_off_or_there_is_no_real_image():
    config = {"decision_threshold": 0.4, "calibrate_threshold": False, "target_fpr": 0.05}
    evaluation = _evaluation([1, 1, 0], [0.9, 0.8, 0.1])
    assert training.choose_threshold(_Constant(), evaluation, config) == {"threshold": 0.4, "method": "fixed"}
    config["calibrate_threshold"] = True
    only_fakes = training.choose_threshold(_Constant(), _evaluation([1, 1], [0.9, 0.8]), config)
    assert only_fakes["threshold"] == 0.4 and "no real image" in only_fakes["method"]


def _transformed(scores, reasons):
    images = np.zeros((len(scores), 2, 2, 3), np.float32)
    images[:, 0, 0, 0] = scores
    return {features.IMAGE: tf.constant(images), features.IMAGE_ERROR: tf.constant(reasons)}


def test_serving_outputs_carry_the_threshold_and_decision():
    outputs = model_lib._outputs(_Constant(), _transformed([0.2, 0.7, 0.9], ["", "", ""]), 0.7, "v1")
    np.testing.assert_array_equal(outputs[features.IS_FAKE].numpy(), [False, False, True])
    np.testing.assert_allclose(outputs[features.THRESHOLD].numpy(), [0.7] * 3)
    np.testing.assert_array_equal(outputs[features.DECISION_SCORE].numpy() > 0.5, [False, False, True])


def test_an_image_that_was_not_decoded_scores_nothing_and_is_not_called_fake():
    outputs = model_lib._outputs(_Constant(), _transformed([0.9, 0.0], ["", "not a JPEG, PNG, GIF or BMP image"]),
                                 0.5, "v1")
    assert outputs[features.FAKE_PROBABILITY].numpy()[0] == pytest.approx(0.9)
    assert np.isnan(outputs[features.FAKE_PROBABILITY].numpy()[1])
    assert np.isnan(outputs[features.DECISION_SCORE].numpy()[1])
    np.testing.assert_array_equal(outputs[features.IS_FAKE].numpy(), [True, False])
    assert outputs[features.IMAGE_ERROR].numpy().tolist() == [b"", b"not a JPEG, PNG, GIF or BMP image"]


def test_the_classify_api_form_puts_the_decision_on_the_larger_score():
    outputs = model_lib._outputs(_Constant(), _transformed([0.1, 0.35, 0.9, 0.0], ["", "", "", "bad"]), 0.3, "v1")
    classification = model_lib._classification(outputs)
    classes = classification[tf.saved_model.CLASSIFY_OUTPUT_CLASSES].numpy()
    scores = classification[tf.saved_model.CLASSIFY_OUTPUT_SCORES].numpy()
    assert classes.tolist() == [[b"real", b"fake"]] * 4 and scores.dtype == np.float32
    np.testing.assert_array_equal(scores[:3, 1] > scores[:3, 0], outputs[features.IS_FAKE].numpy()[:3])
    np.testing.assert_allclose(scores[:3].sum(axis=1), 1.0, rtol=1e-6)
    assert np.isnan(scores[3]).all()
