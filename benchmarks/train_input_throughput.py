"""Training input throughput: the Trainer's tf.data pipeline against the notes' ImageDataGenerator.

    .venv/bin/python benchmarks/train_input_throughput.py [--images 256] [--size 320] [--image-size 299]

Both read the same JPEGs (drawn by fakeface.sample_data at --size px) and
produce augmented batches of 32 images of --image-size px with the founding
notes' policy: rotation up to 45 degrees, shifts of 0.15, horizontal flip,
zoom 0.5. Measured in images per second over several passes, after one
warm-up batch:

  fakeface   training.input_fn exactly as run_fn calls it: gzipped tf.Examples
             read through TFX's tf_dataset_factory, the Transform graph
             (decode + resize, built by tf.Transform's Beam implementation),
             the augmentation layers, prefetch; optionally with blur+JPEG.
  notes      tf.keras ImageDataGenerator(...).flow_from_directory on the same
             files laid out in real/ and fake/ class folders.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from fakeface import features, sample_data  # noqa: E402
from fakeface.pipeline import config as config_lib  # noqa: E402

BATCH = 32
NOTES_POLICY = {"augment_flip": True, "augment_rotation_degrees": 45.0, "augment_shift": 0.15,
                "augment_zoom": 0.5}


def make_images(root: str, count: int, size: int):
    """`count` JPEGs in root/real and root/fake; returns [(bytes, label)]."""
    examples = []
    for index in range(count):
        source = sample_data.SOURCES[index % len(sample_data.SOURCES)]
        data = sample_data.encode_jpeg(sample_data.render_image(source, index, size, seed=5))
        folder = os.path.join(root, features.LABEL_NAMES[source.label])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{index:05d}.jpg"), "wb") as f:
            f.write(data)
        examples.append((data, source.label))
    return examples


def write_examples(examples, uri: str):
    """The examples as ImageExampleGen writes them (gzipped tf.Examples); the TFX data accessor."""
    from tfx import v1 as tfx
    from tfx.components.util import examples_utils, tfxio_utils
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    os.makedirs(os.path.join(uri, "Split-train"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(uri, "Split-train", "data.gz"), options="GZIP") as writer:
        for data, label in examples:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_BYTES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            })).SerializeToString())
    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    artifact.split_names = '["train"]'
    examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
    return tfx.components.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([artifact], []),
        record_batch_factory=None, data_view_decode_fn=None)


def rate(batches, images_per_pass: int, passes: int) -> float:
    """Images per second over `passes` passes of the data, after one warm-up batch."""
    iterator = iter(batches)
    next(iterator)
    steps = passes * images_per_pass // BATCH
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * BATCH / (time.perf_counter() - started)


def fakeface_rate(examples, workdir: str, image_size: int, passes: int, blur_jpeg: float) -> float:
    import tensorflow_transform as tft

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from serving_latency import build_transform_graph

    from fakeface.components.trainer import training

    transform_dir = os.path.join(workdir, f"transform{image_size}")
    if not os.path.isdir(os.path.join(transform_dir, "transform_graph")):
        build_transform_graph(image_size, [data for data, _ in examples[:2]], transform_dir)
    accessor = write_examples(examples, os.path.join(workdir, "examples"))
    config = config_lib.from_dict({
        "transform": {"image_size": image_size},
        "trainer": dict(NOTES_POLICY, batch_size=BATCH, augment_blur_jpeg_probability=blur_jpeg)})
    custom = {"trainer": config_lib.to_dict(config)["trainer"], "transform": config_lib.to_dict(config)["transform"]}
    dataset = training.input_fn([os.path.join(workdir, "examples", "Split-train", "*")], accessor,
                                tft.TFTransformOutput(os.path.join(transform_dir, "transform_graph")),
                                BATCH, True, custom)
    return rate(dataset, len(examples), passes)


def notes_rate(folder: str, count: int, image_size: int, passes: int) -> float:
    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        rescale=1.0 / 255, rotation_range=45, width_shift_range=0.15, height_shift_range=0.15,
        horizontal_flip=True, zoom_range=0.5)
    flow = generator.flow_from_directory(folder, target_size=(image_size, image_size), batch_size=BATCH,
                                         class_mode="binary", seed=0)
    return rate(flow, count, passes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=320, help="side of the JPEGs drawn")
    parser.add_argument("--image-size", type=int, default=299, help="model input side")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-train-input-bench-")
    folder = os.path.join(workdir, "images")
    examples = make_images(folder, args.images, args.size)
    rows = [
        ("notes: ImageDataGenerator.flow_from_directory", notes_rate(folder, args.images, args.image_size,
                                                                     args.passes)),
        ("fakeface: training.input_fn", fakeface_rate(examples, workdir, args.image_size, args.passes, 0.0)),
        ("fakeface: training.input_fn + blur+JPEG (p=0.5)",
         fakeface_rate(examples, workdir, args.image_size, args.passes, 0.5)),
    ]
    baseline = rows[0][1]
    print(f"\n{args.images} JPEGs of {args.size} px -> batches of {BATCH} at {args.image_size} px, "
          f"rotation 45, shift 0.15, flip, zoom 0.5; {args.passes} passes; load average "
          f"{os.getloadavg()[0]:.2f} at the end; {os.cpu_count()} CPUs")
    print("| pipeline | images/s | vs notes |")
    print("| --- | --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value:.0f} | {value / baseline:.1f}x |")
    print(f"\nworkdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
