"""Backbones the Trainer fine-tunes.

small-cnn and bit-m-r50x1 load through a TF Hub handle: a tfhub.dev / Kaggle
URL, a bucket path or a local SavedModel folder; hub.KerasLayer takes all
three. xception is built in-process from Keras applications, its "handle"
naming its weights. Every backbone maps float32 images [batch, height, width,
3] in [0, 1] to a feature vector [batch, dim].
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict


@dataclasses.dataclass(frozen=True)
class Backbone:
    name: str
    # Where the module comes from when the config names no handle. Empty for a
    # backbone that is built locally (see `export_small_cnn`).
    default_handle: str
    description: str
    # Built in-process by Keras rather than loaded through hub.KerasLayer.
    in_process: bool = False


SMALL_CNN = "small-cnn"
BIT_M_R50X1 = "bit-m-r50x1"
XCEPTION = "xception"
# Weights an in-process backbone takes by name rather than by path.
NAMED_WEIGHTS = ("imagenet", "none")

BACKBONES: Dict[str, Backbone] = {
    SMALL_CNN: Backbone(
        SMALL_CNN, "",
        "A small CNN with a fixed high-pass front end, built and saved locally as a "
        "TF Hub module; sized for CPUs, the embedded default and tests."),
    BIT_M_R50X1: Backbone(
        BIT_M_R50X1, "https://tfhub.dev/google/bit/m-r50x1/1",
        "BiT-M ResNet50x1 pre-trained on ImageNet-21k, the founding notes' best model."),
    XCEPTION: Backbone(
        XCEPTION, "imagenet",
        "Keras' Xception, the founding notes' first model: ImageNet weights downloaded by Keras, "
        "a weights .h5 file, or none.", in_process=True),
}


def local_handle(name: str, local_hub_dir: str) -> str:
    """Where a locally built backbone is kept, as an absolute folder."""
    return os.path.abspath(os.path.join(local_hub_dir, name))


def resolve_handle(name: str, configured_handle: str, local_hub_dir: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    if configured_handle:
        return configured_handle
    return BACKBONES[name].default_handle or local_handle(name, local_hub_dir)


def build_small_cnn(seed: int = 0, width: int = 32):
    """A fully convolutional feature extractor that takes images of any size.

    The first layer adds a fixed Laplacian high-pass of the image: generators
    betray themselves in high-frequency periodic patterns that raw pixels
    bury under scene content. The first two convolutions keep full resolution
    so that period-2 patterns are seen before any stride aliases them.
    """
    import tensorflow as tf

    keras = tf.keras
    initializer = lambda i: keras.initializers.HeNormal(seed=seed + i)  # noqa: E731
    inputs = keras.Input(shape=(None, None, 3), name="images")
    laplacian = tf.constant([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    kernel = tf.reshape(laplacian, [3, 3, 1, 1]) * tf.ones([1, 1, 3, 1])
    high_pass = keras.layers.Lambda(
        lambda x: tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME") * 4.0, name="high_pass")(inputs)
    x = keras.layers.Concatenate(name="pixels_and_residual")([inputs, high_pass])
    for i, (filters, stride) in enumerate([(width, 1), (width, 1), (2 * width, 2), (2 * width, 2), (4 * width, 2)]):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                                kernel_initializer=initializer(i), name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    pooled = keras.layers.Concatenate(name="features")([
        keras.layers.GlobalAveragePooling2D(name="mean_pool")(x),
        keras.layers.GlobalMaxPooling2D(name="max_pool")(x)])
    return keras.Model(inputs, pooled, name=SMALL_CNN)


def build_xception(weights: str, image_size: int):
    """Xception without its top, average-pooled to [batch, 2048]; takes [-1, 1] pixels.

    `weights` is "imagenet" (Keras downloads them; not possible air-gapped),
    the path of a weights .h5 file saved from such a model, or "none".
    """
    import tensorflow as tf

    return tf.keras.applications.Xception(
        include_top=False, pooling="avg", weights=None if weights == "none" else weights,
        input_shape=(image_size, image_size, 3))


def export_small_cnn(path: str, seed: int = 0) -> str:
    """Saves the small CNN, randomly initialised, as a TF Hub module at `path`.

    Nothing can be downloaded where the embedded default runs, so this plays
    the part a pre-trained module from tfhub.dev plays on a real cluster, and
    is loaded through exactly the same hub.KerasLayer path.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = build_small_cnn(seed=seed)
    tmp = path.rstrip("/") + ".tmp"
    tf.saved_model.save(model, tmp)
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
    tf.io.gfile.rename(tmp, path)
    return path


def ensure_local_backbone(name: str, handle: str, seed: int = 0) -> bool:
    """Builds a locally built backbone at a local `handle` unless it is there; True if built.

    A URL handle is the cluster's copy, uploaded by whoever set the config up.
    """
    import tensorflow as tf

    if name != SMALL_CNN or "://" in handle or tf.io.gfile.exists(os.path.join(handle, "saved_model.pb")):
        return False
    export_small_cnn(handle, seed=seed)
    return True
