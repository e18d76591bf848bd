"""TF Serving's warm-up requests, exported with every model.

TF Serving replays `assets.extra/tf_serving_warmup_requests`, a TFRecord file
of PredictionLog records, every time it loads a version and before the
version takes traffic; a record that fails fails the load, and more than 1000
are refused (tensorflow_serving/servables/tensorflow/saved_model_warmup_util.cc,
2.16.1). Without them the first request after every load or rollout pays the
graph's initialisation.

Every signature gets a request of one image and one of a full batch, so that
both the per-call set-up and the memory a full batch needs are in place. The
images are drawn to exercise each decoding path of the Transform graph: a
JPEG at the model's input size, one large enough to be decoded down-scaled
(components/transform/preprocessing.py), and a PNG.
"""

from __future__ import annotations

import io
import os
from typing import List, Sequence

import tensorflow as tf

from fakeface import features, sample_data

# WarmupConsts::kRequestsFileName, read from the SavedModel's assets.extra.
FILE_NAME = "tf_serving_warmup_requests"


def images(size: int) -> List[bytes]:
    """The encoded images the requests carry, for a model taking `size` px.

    sample_data's drawing: deterministic, so the same model size always gets
    the same requests.
    """
    from PIL import Image

    side = size + size % 2  # sample_data draws even sizes
    small = sample_data.render_image(sample_data.SOURCES[0], 0, side, seed=0)
    large = sample_data.render_image(sample_data.SOURCES[-1], 1, 2 * side, seed=0)
    png = io.BytesIO()
    Image.fromarray(small).save(png, format="PNG")
    return [sample_data.encode_jpeg(small), sample_data.encode_jpeg(large), png.getvalue()]


def _example(data: bytes) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_BYTES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))})).SerializeToString()


def records(batch: Sequence[bytes]) -> list:
    """One PredictionLog per signature, each asking about every image of `batch`."""
    from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2

    by_bytes = predict_pb2.PredictRequest()
    by_bytes.model_spec.signature_name = features.SIGNATURE_BYTES
    by_bytes.inputs[features.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto(list(batch), dtype=tf.string))
    examples = [_example(data) for data in batch]
    by_examples = predict_pb2.PredictRequest()
    by_examples.model_spec.signature_name = features.SIGNATURE_EXAMPLES
    by_examples.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = features.SIGNATURE_CLASSIFY
    for serialized in examples:
        classify.input.example_list.examples.add().ParseFromString(serialized)
    return [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=by_bytes)),
            prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=by_examples)),
            prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify))]


def write(export_dir: str, size: int, full_batch: int) -> str:
    """Writes the warm-up requests into `export_dir`'s assets.extra; returns the file's path."""
    drawn = images(size)
    # Every path once, then the smallest file: a full batch, in a small file.
    full = drawn + drawn[:1] * (full_batch - len(drawn))
    path = os.path.join(export_dir, "assets.extra", FILE_NAME)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for batch in (drawn[:1], full):
            for record in records(batch):
                writer.write(record.SerializeToString())
    return path
