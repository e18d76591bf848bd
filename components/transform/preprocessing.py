"""Transform's preprocessing_fn: encoded image bytes to model-ready pixels.

This graph is exported with the transform output and travels inside the
served SavedModel, so training, evaluation and serving decode, resize or tile
every image the same way (transform.input_policy). It must stay free of
randomness: augmentation belongs to the Trainer's training input only.

One image never fails the batch it travels in: each is decoded on its own,
and one that cannot be (not an image, over the pixel limit, corrupt) comes
out as zeros with its reason in IMAGE_ERROR. TF Serving merges concurrent
requests into one batch, so an error would otherwise fail every request in it.
"""

from typing import Any, Dict

import tensorflow as tf

from fakeface import features, images
from fakeface.pipeline import config


# The limit of the image contract (fakeface/images.py): a small file whose
# header claims a huge image fails its request instead of exhausting the server.
MAX_PIXELS = images.DEFAULT_MAX_PIXELS
_MAGIC = dict(images.MAGIC_BYTES)
# BMP header fields (little-endian): the info header's size, which is 12 for
# OS/2's, then bits per pixel, compression, palette entries and bit masks.
_BMP_OS2_HEADER_SIZE = 12
_BMP_UNCOMPRESSED, _BMP_BITFIELDS = 0, 3
# The red, green and blue masks of a 32-bit BMP whose bytes are in the order
# TensorFlow assumes (blue, green, red, unused).
_BMP_STANDARD_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF)


def _unsigned(data: tf.Tensor, offset, size: int, big_endian: bool) -> tf.Tensor:
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8), tf.int64)
    weights = [256 ** (size - 1 - i) if big_endian else 256 ** i for i in range(size)]
    return tf.reduce_sum(raw * tf.constant(weights, tf.int64))


def _starts_with(data: tf.Tensor, format_name: str) -> tf.Tensor:
    magic = _MAGIC[format_name]
    return tf.equal(tf.strings.substr(data, 0, len(magic)), magic)


# Every fixed header offset read below lies in the file's first bytes.
_HEAD_BYTES = 128


def _padded(encoded: tf.Tensor) -> tf.Tensor:
    """The file's first _HEAD_BYTES, zero-padded to that length, so that every header offset read exists."""
    return tf.strings.join([tf.strings.substr(encoded, 0, _HEAD_BYTES), tf.constant(b"\0" * _HEAD_BYTES)])


def header_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """Width times height as the file's header states it, without decoding.

    JPEG, PNG, GIF and BMP (OS/2 headers too); 0 for anything else, which
    decoding then refuses.
    """
    padded = _padded(encoded)

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def png():
        return _unsigned(padded, 16, 4, True) * _unsigned(padded, 20, 4, True)

    def gif():
        return _unsigned(padded, 6, 2, False) * _unsigned(padded, 8, 2, False)

    def bmp():
        def os2():
            return _unsigned(padded, 18, 2, False) * _unsigned(padded, 20, 2, False)

        def windows():
            height = _unsigned(padded, 22, 4, False)
            height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # negative: top-down rows
            return _unsigned(padded, 18, 4, False) * height

        return tf.cond(tf.equal(_unsigned(padded, 14, 4, False), _BMP_OS2_HEADER_SIZE), os2, windows)

    return tf.case([
        (_starts_with(padded, "JPEG"), jpeg),
        (_starts_with(padded, "PNG"), png),
        (_starts_with(padded, "GIF"), gif),
        (_starts_with(padded, "BMP"), bmp),
    ], default=lambda: tf.constant(0, tf.int64), exclusive=True)


def _gray_palette(encoded: tf.Tensor, header_size: tf.Tensor, entries: tf.Tensor) -> tf.Tensor:
    """Whether a BMP's palette maps every index i to the gray (i, i, i), as TensorFlow assumes."""
    start = tf.minimum(14 + header_size, tf.cast(tf.strings.length(encoded), tf.int64))
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, start, 4 * entries), tf.uint8), tf.int64)
    complete = tf.equal(tf.size(raw, out_type=tf.int64), 4 * entries)
    quads = tf.reshape(raw[:(tf.size(raw) // 4) * 4], [-1, 4])
    index = tf.range(tf.shape(quads, out_type=tf.int64)[0])
    gray = tf.reduce_all(tf.equal(quads[:, :3], index[:, tf.newaxis]))
    return tf.logical_and(complete, gray)


def _bmp_refusal(encoded: tf.Tensor) -> tf.Tensor:
    """Why TensorFlow would fail or misread this BMP; "" when it reads it right."""
    padded = _padded(encoded)
    header_size = _unsigned(padded, 14, 4, False)
    bits = _unsigned(padded, 28, 2, False)
    compression = _unsigned(padded, 30, 4, False)
    used = _unsigned(padded, 46, 4, False)
    entries = tf.where(tf.logical_or(tf.equal(used, 0), used > 256), tf.constant(256, tf.int64), used)
    standard_masks = tf.reduce_all(tf.stack([
        tf.equal(_unsigned(padded, 54 + 4 * i, 4, False), mask) for i, mask in enumerate(_BMP_STANDARD_MASKS)]))
    uncompressed = tf.logical_or(
        tf.equal(compression, _BMP_UNCOMPRESSED),
        tf.logical_and(tf.equal(compression, _BMP_BITFIELDS), tf.logical_and(tf.equal(bits, 32), standard_masks)))
    return tf.case([
        (tf.equal(header_size, _BMP_OS2_HEADER_SIZE),
         lambda: tf.constant("BMP with an OS/2 header, which TensorFlow misreads")),
        (tf.logical_not(tf.reduce_any(tf.equal(bits, [8, 24, 32]))),
         lambda: tf.strings.join(["BMP with ", tf.strings.as_string(bits),
                                  " bits per pixel; TensorFlow reads 8, 24 and 32"])),
        (tf.logical_not(uncompressed),
         lambda: tf.constant("compressed BMP (RLE, or bit fields other than 8-bit blue, green, red); "
                             "TensorFlow reads uncompressed BMPs only")),
        (tf.logical_and(tf.equal(bits, 8), tf.logical_not(_gray_palette(encoded, header_size, entries))),
         lambda: tf.constant("8-bit BMP with a colour palette, which TensorFlow decodes as palette "
                             "indices, not colours")),
    ], default=lambda: tf.constant(""))


def refusal(encoded: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Why decode() refuses these bytes before decoding them; "" when it goes on to decode.

    The checks TensorFlow's decoder cannot make itself: the pixel limit from the
    header, and the BMPs it would misread. Whatever else it cannot decode, it
    refuses on its own.
    """
    return tf.cond(
        header_pixels(encoded) > max_pixels,
        lambda: tf.constant(f"image has more than {max_pixels} pixels by its header"),
        lambda: tf.cond(_starts_with(encoded, "BMP"), lambda: _bmp_refusal(encoded), lambda: tf.constant("")))


def decode_uint8(encoded: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Decodes one encoded image to uint8 [height, width, 3] under the image contract.

    JPEG, PNG, GIF and BMP are taken, animations give their first frame, and
    grayscale and alpha are brought to RGB. Bytes that are not an image, an
    image over `max_pixels` (at most MAX_PIXELS) by its header, or one
    TensorFlow would misread (refusal()) fail with an InvalidArgument error, so
    a corrupt input is never scored.
    """
    reason = refusal(encoded, min(max_pixels, MAX_PIXELS))
    refused = tf.debugging.Assert(tf.equal(reason, ""), [reason])
    with tf.control_dependencies([refused]):
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes one encoded image to float32 [height, width, 3] in [0, 1], at its own size (decode_uint8)."""
    return tf.image.convert_image_dtype(decode_uint8(encoded), tf.float32)


def failure_reasons(encoded: tf.Tensor, decoded: tf.Tensor) -> tf.Tensor:
    """Why each image of a batch of encoded images was not decoded; "" where it was.

    `decoded` says which were. Read from the header alone, which may itself
    be unreadable.
    """
    pixels, readable = per_image(header_pixels, encoded, tf.TensorSpec([], tf.int64))
    over = tf.strings.join(["image of ", tf.strings.as_string(pixels),
                            f" pixels by its header, over the limit of {MAX_PIXELS}"])
    refused, _ = per_image(refusal, encoded, tf.TensorSpec([], tf.string))
    return tf.where(decoded, "", tf.where(
        ~readable, "the image header cannot be read", tf.where(
            tf.equal(pixels, 0), "not a JPEG, PNG, GIF or BMP image", tf.where(
                pixels > MAX_PIXELS, over, tf.where(
                    tf.not_equal(refused, ""), refused,
                    "the image data cannot be decoded: corrupt, truncated or of a kind the model does not take")))))


def per_image(fn, encoded: tf.Tensor, spec: tf.TensorSpec):
    """fn on each encoded image of a batch, an error failing only its own image.

    Returns ([batch, *spec.shape] outputs, zeros where fn failed; [batch] bool,
    where it succeeded). tf.data's ignore_errors is how a graph of stock ops
    outlives a failing op; the images keep their order.
    """
    count = tf.shape(encoded, out_type=tf.int64)[0]
    # Without tf.data's rewrites (map parallelization among them) the images
    # are decoded one at a time, which bounds the memory of a batch
    # (docs/serving.md, memory), and no rewriting is paid on every call.
    sequential = tf.data.Options()
    sequential.experimental_optimization.apply_default_optimizations = False
    sequential.autotune.enabled = False
    outcomes = (tf.data.Dataset.from_tensor_slices((tf.range(count), encoded))
                .map(lambda index, data: (index, fn(data)))
                .ignore_errors()
                .with_options(sequential))
    # When every image fails there is no batch to take: the empty one stands in.
    none = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int64), tf.zeros([0, *spec.shape], spec.dtype)))
    indices, outputs = (outcomes.batch(tf.maximum(count, 1)).concatenate(none).take(1)
                        .get_single_element())
    done = tf.scatter_nd(indices[:, None], tf.ones_like(indices, tf.bool), [count])
    # The common case, every image done, costs no copy.
    outputs = tf.cond(tf.reduce_all(done), lambda: outputs, lambda: tf.scatter_nd(
        indices[:, None], outputs, tf.concat([[count], tf.constant(spec.shape.as_list(), tf.int64)], 0)))
    return tf.ensure_shape(outputs, [None, *spec.shape]), done


def isolated(fn, image_bytes: tf.Tensor, spec: tf.TensorSpec):
    """fn on each of a batch of encoded images: ([batch, *spec.shape], [batch] reasons, "" where done)."""
    encoded = tf.reshape(image_bytes, [-1])
    outputs, done = per_image(fn, encoded, spec)
    reasons = tf.cond(tf.reduce_all(done), lambda: tf.fill(tf.shape(done), ""),
                      lambda: failure_reasons(encoded, done))
    return outputs, reasons


# The down-scaling factors libjpeg applies while decoding (decode_jpeg's
# `ratio`), largest first.
JPEG_RATIOS = (8, 4, 2)


def decode_for_size(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """decode(), except that a JPEG at least twice `image_size` on its shorter side is
    decoded down-scaled in the DCT domain, by the largest ratio that keeps that side
    at least `image_size`.

    Decoding at 1/2, 1/4 or 1/8 of the size never holds the full-size pixels,
    and the inverse DCT and the resize work on the smaller image; only the
    entropy decoding still reads the whole file. Over-limit and other images
    go through decode(), which applies its rules; libjpeg accepts and refuses
    the same files at every ratio.
    """
    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        within_limit = shape[0] * shape[1] <= MAX_PIXELS
        shorter = tf.minimum(shape[0], shape[1])
        return tf.case([(within_limit & (shorter >= ratio * image_size),
                         lambda ratio=ratio: tf.image.convert_image_dtype(
                             tf.io.decode_jpeg(encoded, channels=3, ratio=ratio), tf.float32))
                        for ratio in JPEG_RATIOS], default=lambda: decode(encoded))

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, lambda: decode(encoded))


def _antialiased_weights(in_size: tf.Tensor, out_size: int) -> tf.sparse.SparseTensor:
    """[out_size, in_size] weights of tf.image.resize's anti-aliased bilinear filter along one axis.

    As TensorFlow's ScaleAndTranslate kernel computes them: output pixel x
    samples the input at (x + 0.5) / scale; when shrinking, the triangle
    kernel is widened by 1 / scale; the taps inside the image are normalised
    to sum to 1.
    """
    # Through the scale, as TensorFlow computes it, so that sample positions round alike.
    inverse_scale = 1.0 / (float(out_size) / tf.cast(in_size, tf.float32))
    kernel_scale = tf.maximum(inverse_scale, 1.0)
    span = tf.minimum(2 * tf.cast(tf.math.ceil(kernel_scale), tf.int32) + 1, in_size)
    sample = (tf.range(out_size, dtype=tf.float32) + 0.5) * inverse_scale
    start = tf.clip_by_value(tf.cast(tf.math.ceil(sample - kernel_scale - 0.5), tf.int32), 0, in_size - 1)
    end = tf.clip_by_value(tf.cast(tf.floor(sample + kernel_scale - 0.5), tf.int32), 0, in_size - 1) + 1
    source = start[:, None] + tf.range(span)[None, :]
    weights = tf.maximum(0.0, 1.0 - tf.abs((tf.cast(source, tf.float32) + 0.5 - sample[:, None]) / kernel_scale))
    weights = tf.where(source < end[:, None], weights, 0.0)
    weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
    # Taps past the end carry no weight; clamped, they stay in bounds and in order.
    rows = tf.repeat(tf.range(out_size, dtype=tf.int64), span)
    columns = tf.cast(tf.reshape(tf.minimum(source, in_size - 1), [-1]), tf.int64)
    return tf.sparse.SparseTensor(tf.stack([rows, columns], axis=1), tf.reshape(weights, [-1]),
                                  tf.stack([tf.constant(out_size, tf.int64), tf.cast(in_size, tf.int64)]))


def resize_antialiased(image: tf.Tensor, size: int) -> tf.Tensor:
    """tf.image.resize(image, [size, size], antialias=True) of a float32 [h, w, c] image.

    The same separable filter applied as two sparse matrix products, one per
    axis: a third to a half of the time of TensorFlow's ScaleAndTranslate
    kernel, which dominated the decode and resize of a served image.
    """
    height, width, channels = tf.shape(image)[0], tf.shape(image)[1], tf.shape(image)[2]
    rows = tf.sparse.sparse_dense_matmul(_antialiased_weights(height, size), tf.reshape(image, [height, -1]))
    by_column = tf.reshape(tf.transpose(tf.reshape(rows, [size, width, channels]), [1, 0, 2]), [width, -1])
    columns = tf.sparse.sparse_dense_matmul(_antialiased_weights(width, size), by_column)
    return tf.transpose(tf.reshape(columns, [size, size, channels]), [1, 0, 2])


def resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """One encoded image as float32 [size, size, 3] in [0, 1], whatever its size."""
    image = resize_antialiased(decode_for_size(encoded, image_size), image_size)
    return tf.clip_by_value(image, 0.0, 1.0)


def decode_and_resize(image_bytes: tf.Tensor, image_size: int):
    """A batch of encoded images as (float32 [batch, size, size, 3] in [0, 1], [batch] reasons)."""
    return isolated(lambda encoded: resize(encoded, image_size), image_bytes,
                    tf.TensorSpec([image_size, image_size, 3], tf.float32))


def pad_to_at_least(image: tf.Tensor, size: int) -> tf.Tensor:
    """Zero-pads an [h, w, 3] image, centred, so that both sides are at least `size`.

    Padding, not enlarging: interpolation would add the very up-sampling
    traces the detector learns to call fake.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    target_height, target_width = tf.maximum(height, size), tf.maximum(width, size)
    return tf.image.pad_to_bounding_box(image, (target_height - height) // 2, (target_width - width) // 2,
                                        target_height, target_width)


def _offsets(length: tf.Tensor, size: int, count: int):
    """Where `count` crops of `size` start along a side of `length`: centred, or corner to corner."""
    if count == 1:
        return [(length - size) // 2]
    span = tf.cast(length - size, tf.float32)
    return [tf.cast(tf.round(span * i / (count - 1)), tf.int32) for i in range(count)]


def tiles(image: tf.Tensor, crop_size: int, tiles_per_side: int) -> tf.Tensor:
    """The deterministic crops of one image: [tiles_per_side ** 2, size, size, 3], row by row.

    1 per side is the centre crop; n > 1 an n x n grid from corner to corner,
    overlapping when the crops together are wider than the image.
    """
    image = pad_to_at_least(image, crop_size)
    tops = _offsets(tf.shape(image)[0], crop_size, tiles_per_side)
    lefts = _offsets(tf.shape(image)[1], crop_size, tiles_per_side)
    return tf.stack([image[top:top + crop_size, left:left + crop_size] for top in tops for left in lefts])


def decode_and_tile(image_bytes: tf.Tensor, crop_size: int, tiles_per_side: int):
    """A batch of encoded images as (float32 [batch, tiles, size, size, 3] at native resolution, reasons)."""
    return isolated(lambda encoded: tiles(decode(encoded), crop_size, tiles_per_side), image_bytes,
                    tf.TensorSpec([tiles_per_side ** 2, crop_size, crop_size, 3], tf.float32))


def model_images(image_bytes: tf.Tensor, transform_config: Dict[str, Any]):
    """Model input under transform.input_policy (pipeline/config.py), and why an image has none.

    "resize": [batch, size, size, 3]. "crop": [batch, tiles, crop, crop, 3],
    whose probabilities the model averages per image (components/trainer/model.py).
    The reasons are [batch] strings, "" for every image decoded.
    """
    side = config.model_input_size(transform_config)
    if transform_config["input_policy"] == "crop":
        return decode_and_tile(image_bytes, side, int(transform_config["crop_tiles_per_side"]))
    return decode_and_resize(image_bytes, side)


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, Any]:
    """TFT entry point; `custom_config` carries the pipeline's transform settings."""
    images, reasons = model_images(inputs[features.IMAGE_BYTES], custom_config)
    return {features.IMAGE: images, features.IMAGE_ERROR: reasons, features.LABEL: inputs[features.LABEL]}
