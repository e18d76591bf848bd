"""Transform's preprocessing_fn: encoded image bytes to model-ready pixels.

This graph is exported with the transform output and travels inside the
served SavedModel, so training, evaluation and serving decode and resize every
image the same way. It must stay free of randomness: augmentation belongs to
the Trainer's training input only.
"""

from typing import Any, Dict

import tensorflow as tf

from fakeface import features


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes a batch of encoded images to float32 [batch, size, size, 3] in [0, 1].

    JPEG, PNG, GIF (first frame) and BMP of any size are taken; grayscale and
    alpha are brought to RGB. Bytes that are not an image fail the whole call
    with TensorFlow's decode error, so a corrupt input is never scored.
    """
    def decode_one(encoded: tf.Tensor) -> tf.Tensor:
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
