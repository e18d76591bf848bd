"""The detector model and the serving signatures exported with it."""

from __future__ import annotations

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


def _outputs(model: tf.keras.Model, images: tf.Tensor, threshold: float,
             model_version: str) -> Dict[str, tf.Tensor]:
    probability = fake_probability(model, images)
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
