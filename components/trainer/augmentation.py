"""Training-only augmentation; the serving graph never contains any of it.

Two kinds, both switched by trainer.augment_* knobs (pipeline/config.py),
both applied in the tf.data pipeline with stateless random ops seeded from
trainer.seed and the position in the stream, so a run is repeatable and no
op holds random state:

- the founding notes' geometric policy (flip, rotation, shift, zoom), per batch;
- Wang et al.'s blur + JPEG, per image.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import tensorflow as tf


# What each stateless draw is for. Folded into its key so that the draws of
# different purposes for the same position in the stream are independent.
CROP, BLUR_JPEG, GEOMETRIC = 1, 2, 3


def stream_seed(seed: int, index: tf.Tensor, purpose: int) -> tf.Tensor:
    """The stateless key of one purpose's draws at position `index` of the stream."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.experimental.stateless_fold_in(key, purpose)


def make_geometric(trainer_config: Dict[str, Any]
                   ) -> Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
    """f(index, images) for a batch [b, h, w, 3] of [0, 1] images; None when all is off.

    The notes' policy as configured: horizontal flip, rotation up to
    augment_rotation_degrees, shifts up to augment_shift of the side, zoom
    drawn from [1 - augment_zoom, 1 + augment_zoom]; borders filled with the
    nearest pixel, as ImageDataGenerator does. `index` is the batch's position
    in the stream: with trainer.seed it decides every draw.

    Rotation, shift, zoom and flip are composed into one affine transform per
    image and resampled once: three resamplings (one Keras layer each) cost
    three times as much and blur the image three times over. Flips alone
    are exact mirror images, without resampling.
    """
    flip = bool(trainer_config["augment_flip"])
    rotation = math.radians(float(trainer_config["augment_rotation_degrees"]))
    shift = float(trainer_config["augment_shift"])
    zoom = float(trainer_config["augment_zoom"])
    seed = int(trainer_config["seed"])
    if not (flip or rotation or shift or zoom):
        return None

    def geometric(index: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
        batch = tf.shape(images)[0]
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
        draws = tf.random.stateless_uniform([batch, 5], stream_seed(seed, index, GEOMETRIC),
                                            minval=-1.0, maxval=1.0)
        mirror = tf.where(draws[:, 0] < 0, -1.0, 1.0) if flip else tf.ones([batch])
        if not (rotation or shift or zoom):
            return tf.where(tf.reshape(mirror < 0, [-1, 1, 1, 1]), tf.reverse(images, axis=[2]), images)
        angle = draws[:, 1] * rotation
        scale = 1.0 + draws[:, 2] * zoom
        shift_x, shift_y = draws[:, 3] * shift * width, draws[:, 4] * shift * height
        # Where each output pixel p samples the input: c + scale * R(angle) * F * (p - c) - shift.
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        a00, a01, a10, a11 = cos * mirror, -sin, sin * mirror, cos
        centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        offset_x = centre_x - a00 * centre_x - a01 * centre_y - shift_x
        offset_y = centre_y - a10 * centre_x - a11 * centre_y - shift_y
        zeros = tf.zeros([batch])
        transforms = tf.stack([a00, a01, offset_x, a10, a11, offset_y, zeros, zeros], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")

    return geometric


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of one [h, w, c] image with a kernel of fixed size.

    The kernel always has 2 * radius + 1 taps, so the graph is the same for
    every sigma; only its weights follow `sigma`, and a sigma of 0 gives the
    identity. Borders are mirrored, so they do not darken.

    Each pass is a plain convolution with one input and one output channel,
    the colour channels taken as the batch: TF 2.16's oneDNN depthwise kernel
    hangs on this project's CPUs for horizontal kernels of 19 taps (sigma 3),
    and a weighted sum of shifted views costs twice the time of this form.
    """
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    # A floor on sigma keeps the division finite; at 1e-3 every off-centre
    # weight underflows to exactly 0.
    weights = tf.exp(-tf.square(taps) / (2.0 * tf.square(tf.maximum(sigma, 1e-3))))
    weights = weights / tf.reduce_sum(weights)
    padded = tf.pad(image, [[radius, radius], [radius, radius], [0, 0]], "SYMMETRIC")
    channels = tf.transpose(padded, [2, 0, 1])[..., tf.newaxis]
    rows = tf.nn.conv2d(channels, tf.reshape(weights, [1, -1, 1, 1]), strides=1, padding="VALID")
    blurred = tf.nn.conv2d(rows, tf.reshape(weights, [-1, 1, 1, 1]), strides=1, padding="VALID")
    return tf.transpose(blurred[..., 0], [1, 2, 0])


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
        seeds = tf.random.experimental.stateless_split(stream_seed(seed, index, BLUR_JPEG), num=2)
        draws = tf.random.stateless_uniform([3], seeds[0])
        quality = tf.random.stateless_uniform([], seeds[1], minval=quality_min, maxval=quality_max + 1,
                                              dtype=tf.int32)
        image = tf.cond(draws[0] < probability,
                        lambda: gaussian_blur(image, draws[1] * sigma_max, radius), lambda: image)
        image = tf.cond(draws[2] < probability,
                        lambda: tf.image.adjust_jpeg_quality(image, quality), lambda: image)
        return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), shape)

    return blur_jpeg
