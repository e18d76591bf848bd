"""The detector model and the serving signatures exported with it."""

from __future__ import annotations

import os
from typing import Any, Dict

import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_transform as tft

from fakeface import features
from fakeface.components.trainer import backbones


def build_model(backbone: str, handle: str, image_size: int, trainable: bool, dropout: float,
                optimizer: tf.keras.optimizers.Optimizer) -> tf.keras.Model:
    """The named backbone plus a one-unit sigmoid head: P(fake).

    Built under the global mixed-precision policy, if one is set; the head
    computes in float32 either way, so probabilities and the loss stay
    float32.
    """
    images = tf.keras.Input(shape=(image_size, image_size, 3), name=features.IMAGE)
    if backbones.BACKBONES[backbone].in_process:
        base = backbones.build_xception(handle, image_size)
        base.trainable = trainable
        pixels = tf.keras.layers.Rescaling(2.0, offset=-1.0, name="xception_preprocessing")(images)
        # Batch norm stays in inference mode even while its weights are
        # fine-tuned: small, single-class-heavy batches would otherwise
        # replace the pre-trained moving statistics, and train-mode and
        # inference-mode outputs drift apart. That is a common cause of a
        # fine-tuned Xception stuck at 50% (docs/training.md).
        embedding = base(pixels, training=False)
    else:
        # Hub SavedModels were traced in float32: the layer must not cast its
        # input to a mixed-precision compute dtype.
        embedding = hub.KerasLayer(handle, trainable=trainable, dtype="float32", name="backbone")(images)
    embedding = tf.keras.layers.Dropout(dropout, name="dropout")(embedding)
    probability = tf.keras.layers.Dense(1, activation="sigmoid", dtype="float32",
                                        name=features.FAKE_PROBABILITY)(embedding)
    model = tf.keras.Model(images, probability, name="fakeface")
    model.compile(
        optimizer=optimizer,
        loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=[tf.keras.metrics.BinaryAccuracy(name="accuracy"), tf.keras.metrics.AUC(name="auc")])
    return model


def decision_score(probability: tf.Tensor, threshold: float) -> tf.Tensor:
    """Maps [0, threshold] onto [0, 0.5] and (threshold, 1] onto (0.5, 1].

    Strictly increasing, so AUC and every ranking are those of the
    probability, while "score > 0.5" (TFMA's rule at a threshold) is exactly
    the model's decision: the Evaluator's EvalConfig is fixed when the
    pipeline is built, before the Trainer has chosen the threshold. In
    float64, so that a probability one float32 step above the threshold still
    lands above 0.5.
    """
    p = tf.cast(probability, tf.float64)
    t = tf.constant(threshold, tf.float64)
    below = tf.math.divide_no_nan(p, 2.0 * t)
    above = 0.5 + 0.5 * tf.math.divide_no_nan(p - t, 1.0 - t)
    return tf.where(p > t, above, below)


def fake_probability(model: tf.keras.Model, images: tf.Tensor) -> tf.Tensor:
    """P(fake) per image, [batch], from transformed images of either input policy.

    [batch, size, size, 3] ("resize") is scored as it is; [batch, tiles, crop,
    crop, 3] ("crop") scores every tile and averages the tiles' probabilities.
    """
    if images.shape.rank == 5:
        per_tile = model(tf.reshape(images, [-1, *images.shape[2:]]), training=False)
        return tf.reduce_mean(tf.reshape(per_tile, [-1, images.shape[1]]), axis=1)
    return tf.reshape(model(images, training=False), [-1])


def _outputs(model: tf.keras.Model, transformed: Dict[str, tf.Tensor], threshold: float,
             model_version: str) -> Dict[str, tf.Tensor]:
    """An image the Transform graph could not decode scores NaN, is not fake, and says why."""
    reasons = transformed[features.IMAGE_ERROR]
    scored = tf.equal(reasons, "")
    probability = tf.where(scored, fake_probability(model, transformed[features.IMAGE]), float("nan"))
    batch = tf.shape(probability)
    return {
        features.FAKE_PROBABILITY: probability,
        features.DECISION_SCORE: decision_score(probability, threshold),
        features.IS_FAKE: probability > threshold,
        features.THRESHOLD: tf.fill(batch, tf.constant(threshold, tf.float32)),
        features.MODEL_VERSION: tf.fill(batch, tf.constant(model_version)),
        features.IMAGE_ERROR: reasons,
    }


def _classification(outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """TF Serving's Classify API form: [batch, 2] classes ("real", "fake") and their scores.

    The scores are 1 - decision_score and decision_score, so the higher one is
    the model's decision at its threshold; an image that cannot be decoded
    scores NaN for both (the Classify API has no room for a reason).
    """
    score = tf.cast(outputs[features.DECISION_SCORE], tf.float32)
    names = tf.constant([[features.LABEL_NAMES[features.REAL], features.LABEL_NAMES[features.FAKE]]])
    return {
        tf.saved_model.CLASSIFY_OUTPUT_CLASSES: tf.tile(names, [tf.shape(score)[0], 1]),
        tf.saved_model.CLASSIFY_OUTPUT_SCORES: tf.stack([1.0 - score, score], axis=1),
    }


def serving_signatures(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
                       threshold: float, model_version: str) -> Dict[str, Any]:
    """Encoded image bytes in (SIGNATURE_BYTES), tf.Examples in (SIGNATURE_EXAMPLES, TFMA's),
    and the Classify API's (SIGNATURE_CLASSIFY; see mark_classify_signature).

    All run the Transform graph inside the model, so a client sends the file
    as it is (TF Serving's REST API takes it as {"b64": ...}).
    """
    # Kept as an attribute so that the transform graph's assets are saved.
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {name: raw_spec[name] for name in features.SERVING_FEATURES}

    def score_examples(serialized):
        transformed = model.tft_layer(tf.io.parse_example(serialized, serving_spec))
        return _outputs(model, transformed, threshold, model_version)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGE_BYTES)])
    def serve_image_bytes(image_bytes):
        transformed = model.tft_layer({features.IMAGE_BYTES: image_bytes})
        return _outputs(model, transformed, threshold, model_version)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        return score_examples(serialized)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=tf.saved_model.CLASSIFY_INPUTS)])
    def classify(serialized):
        return _classification(score_examples(serialized))

    return {
        features.SIGNATURE_BYTES: serve_image_bytes.get_concrete_function(),
        features.SIGNATURE_EXAMPLES: serve_examples.get_concrete_function(),
        features.SIGNATURE_CLASSIFY: classify.get_concrete_function(),
    }


def mark_classify_signature(export_dir: str) -> None:
    """Gives SIGNATURE_CLASSIFY the classify method name in a saved model.

    TF2 saves every signature with the predict method, and TF Serving's
    Classify API refuses any other (classifier.cc:
    GetClassificationSignatureDef). The fingerprint is rewritten, as it
    covers saved_model.pb.
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.saved_model import fingerprinting_utils

    path = os.path.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def[features.SIGNATURE_CLASSIFY].method_name = tf.saved_model.CLASSIFY_METHOD_NAME
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())
    fingerprinting_utils.write_fingerprint(export_dir)
