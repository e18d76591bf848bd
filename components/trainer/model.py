"""The detector model and the serving signatures exported with it."""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_transform as tft

from fakeface import features


def build_model(handle: str, image_size: int, trainable: bool, dropout: float,
                learning_rate: float) -> tf.keras.Model:
    """Backbone from `handle` plus a one-unit sigmoid head: P(fake)."""
    images = tf.keras.Input(shape=(image_size, image_size, 3), name=features.IMAGE)
    embedding = hub.KerasLayer(handle, trainable=trainable, name="backbone")(images)
    embedding = tf.keras.layers.Dropout(dropout, name="dropout")(embedding)
    probability = tf.keras.layers.Dense(1, activation="sigmoid", name=features.FAKE_PROBABILITY)(embedding)
    model = tf.keras.Model(images, probability, name="fakeface")
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
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


def _outputs(model: tf.keras.Model, images: tf.Tensor, threshold: float,
             model_version: str) -> Dict[str, tf.Tensor]:
    probability = tf.reshape(model(images, training=False), [-1])
    batch = tf.shape(probability)
    return {
        features.FAKE_PROBABILITY: probability,
        features.DECISION_SCORE: decision_score(probability, threshold),
        features.IS_FAKE: probability > threshold,
        features.THRESHOLD: tf.fill(batch, tf.constant(threshold, tf.float32)),
        features.MODEL_VERSION: tf.fill(batch, tf.constant(model_version)),
    }


def serving_signatures(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
                       threshold: float, model_version: str) -> Dict[str, Any]:
    """`serving_default` takes encoded image bytes; `serving_examples` tf.Examples.

    Both run the Transform graph inside the model, so a client sends the file
    as it is (TF Serving's REST API takes it as {"b64": ...}).
    """
    # Kept as an attribute so that the transform graph's assets are saved.
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {name: raw_spec[name] for name in features.SERVING_FEATURES}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGE_BYTES)])
    def serve_image_bytes(image_bytes):
        transformed = model.tft_layer({features.IMAGE_BYTES: image_bytes})
        return _outputs(model, transformed[features.IMAGE], threshold, model_version)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        parsed = tf.io.parse_example(serialized, serving_spec)
        transformed = model.tft_layer(parsed)
        return _outputs(model, transformed[features.IMAGE], threshold, model_version)

    return {
        "serving_default": serve_image_bytes.get_concrete_function(),
        "serving_examples": serve_examples.get_concrete_function(),
    }
