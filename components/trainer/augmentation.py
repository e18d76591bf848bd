"""Training-only augmentation; the serving graph never contains any of it.

Two kinds, both switched by trainer.augment_* knobs (pipeline/config.py):

- the founding notes' geometric policy (flip, rotation, shift, zoom), as Keras
  preprocessing layers applied to whole batches;
- Wang et al.'s blur + JPEG, applied per image in the tf.data pipeline with
  stateless random ops seeded from the image's position in the stream and
  trainer.seed, so a run is repeatable and no op holds random state.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import tensorflow as tf


def make_augmenter(trainer_config: Dict[str, Any]) -> tf.keras.Sequential:
    """The notes' geometric augmentation of a batch of [0, 1] images, as configured.

    Built once, outside the input pipeline's traced functions, because its
    layers own random-generator state.
    """
    seed = int(trainer_config["seed"])
    layers = []
    if trainer_config["augment_flip"]:
        layers.append(tf.keras.layers.RandomFlip("horizontal", seed=seed))
    if trainer_config["augment_rotation_degrees"]:
        layers.append(tf.keras.layers.RandomRotation(
            trainer_config["augment_rotation_degrees"] / 360.0, fill_mode="nearest", seed=seed + 1))
    if trainer_config["augment_shift"]:
        shift = trainer_config["augment_shift"]
        layers.append(tf.keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed + 2))
    if trainer_config["augment_zoom"]:
        zoom = trainer_config["augment_zoom"]
        layers.append(tf.keras.layers.RandomZoom((-zoom, zoom), fill_mode="nearest", seed=seed + 3))
    return tf.keras.Sequential(layers, name="augmentation")


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of one [h, w, c] image with a kernel of fixed size.

    The kernel always has 2 * radius + 1 taps, so the graph is the same for
    every sigma; only its weights follow `sigma`, and a sigma of 0 gives the
    identity. Borders are mirrored, so they do not darken.

    Written as a weighted sum of shifted views, not a depthwise convolution:
    TF 2.16's oneDNN depthwise kernel hangs on this project's CPUs for
    horizontal kernels of 19 taps (sigma 3), which is what stalled an earlier
    attempt at this augmentation.
    """
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    # A floor on sigma keeps the division finite; at 1e-3 every off-centre
    # weight underflows to exactly 0.
    weights = tf.exp(-tf.square(taps) / (2.0 * tf.square(tf.maximum(sigma, 1e-3))))
    weights = weights / tf.reduce_sum(weights)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    padded = tf.pad(image, [[radius, radius], [radius, radius], [0, 0]], "SYMMETRIC")
    rows = tf.add_n([weights[k] * padded[:, k:k + width] for k in range(2 * radius + 1)])
    return tf.add_n([weights[k] * rows[k:k + height] for k in range(2 * radius + 1)])


def make_blur_jpeg(trainer_config: Dict[str, Any]
                   ) -> Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
    """f(index, image) for one [h, w, 3] image in [0, 1]; None when switched off.

    With probability p the image is blurred (sigma uniform in [0, sigma_max]),
    and independently with probability p re-encoded as JPEG (quality uniform
    in [quality_min, quality_max]). `index` is the image's position in the
    training stream: with trainer.seed it decides every draw.
    """
    probability = float(trainer_config["augment_blur_jpeg_probability"])
    if not probability:
        return None
    sigma_max = float(trainer_config["augment_blur_sigma_max"])
    radius = max(1, math.ceil(3.0 * sigma_max))  # 3 sigma holds 99.7% of the weight
    quality_min = int(trainer_config["augment_jpeg_quality_min"])
    quality_max = int(trainer_config["augment_jpeg_quality_max"])
    seed = int(trainer_config["seed"])

    def blur_jpeg(index: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
        shape = image.shape
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)]), num=2)
        draws = tf.random.stateless_uniform([3], seeds[0])
        quality = tf.random.stateless_uniform([], seeds[1], minval=quality_min, maxval=quality_max + 1,
                                              dtype=tf.int32)
        image = tf.cond(draws[0] < probability,
                        lambda: gaussian_blur(image, draws[1] * sigma_max, radius), lambda: image)
        image = tf.cond(draws[2] < probability,
                        lambda: tf.image.adjust_jpeg_quality(image, quality), lambda: image)
        return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), shape)

    return blur_jpeg
