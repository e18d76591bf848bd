"""Transform's preprocessing_fn: encoded image bytes to model-ready pixels.

This graph is exported with the transform output and travels inside the
served SavedModel, so training, evaluation and serving decode and resize every
image the same way. It must stay free of randomness: augmentation belongs to
the Trainer's training input only.
"""

from typing import Any, Dict

import tensorflow as tf

from fakeface import features, images


# The limit ingestion applies (fakeface/images.py): a small file whose header
# claims a huge image fails its request instead of exhausting the server.
MAX_PIXELS = images.DEFAULT_MAX_PIXELS


def _unsigned(data: tf.Tensor, offset: int, size: int, big_endian: bool) -> tf.Tensor:
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8), tf.int64)
    weights = [256 ** (size - 1 - i) if big_endian else 256 ** i for i in range(size)]
    return tf.reduce_sum(raw * tf.constant(weights, tf.int64))


def header_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """Width times height as the file's header states it, without decoding.

    JPEG, PNG, GIF and BMP; 0 for anything else, which decoding then refuses.
    """
    padded = tf.strings.join([encoded, tf.constant(b"\0" * 32)])

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def png():
        return _unsigned(padded, 16, 4, True) * _unsigned(padded, 20, 4, True)

    def gif():
        return _unsigned(padded, 6, 2, False) * _unsigned(padded, 8, 2, False)

    def bmp():
        height = _unsigned(padded, 22, 4, False)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # negative: top-down rows
        return _unsigned(padded, 18, 4, False) * height

    return tf.case([
        (tf.equal(tf.strings.substr(padded, 0, 3), b"\xff\xd8\xff"), jpeg),
        (tf.equal(tf.strings.substr(padded, 0, 4), b"\x89PNG"), png),
        (tf.equal(tf.strings.substr(padded, 0, 3), b"GIF"), gif),
        (tf.equal(tf.strings.substr(padded, 0, 2), b"BM"), bmp),
    ], default=lambda: tf.constant(0, tf.int64), exclusive=True)


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes a batch of encoded images to float32 [batch, size, size, 3] in [0, 1].

    JPEG, PNG, GIF (first frame) and BMP of any size are taken; grayscale and
    alpha are brought to RGB. Bytes that are not an image, or an image over
    MAX_PIXELS by its header, fail the whole call with an InvalidArgument
    error, so a corrupt input is never scored.
    """
    def decode_one(encoded: tf.Tensor) -> tf.Tensor:
        within_limit = tf.debugging.assert_less_equal(
            header_pixels(encoded), tf.constant(MAX_PIXELS, tf.int64),
            message=f"image has more than {MAX_PIXELS} pixels")
        with tf.control_dependencies([within_limit]):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.clip_by_value(image, 0.0, 1.0)

    return tf.map_fn(decode_one, tf.reshape(image_bytes, [-1]),
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, Any]:
    """TFT entry point; `custom_config` carries the pipeline's transform settings."""
    return {
        features.IMAGE: decode_and_resize(inputs[features.IMAGE_BYTES], int(custom_config["image_size"])),
        features.LABEL: inputs[features.LABEL],
    }
