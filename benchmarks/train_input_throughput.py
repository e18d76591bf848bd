"""Training input throughput: the Trainer's tf.data pipeline against the notes' ImageDataGenerator.

    .venv/bin/python benchmarks/train_input_throughput.py [--images 256] [--size 320] [--image-size 299]

Two parts, each over the same JPEGs (drawn by fakeface.sample_data) for every
row, in one run:

1. The notes' setting: --images JPEGs of --size px into augmented batches of
   32 at --image-size px, with the founding notes' policy (rotation up to 45
   degrees, shifts of 0.15, horizontal flip, zoom 0.5), without and with
   blur+JPEG (p=0.5).
2. The default run's own input: 320 sample JPEGs of 64 px into batches of
   16 at 64 px with the default config's augmentation (flips).

Rows, in images per second, the first batch of each pass sequence left out
(it traces the graph), with TensorFlow's op determinism on as run_fn turns it
on (--op-determinism off shows what it costs):

  notes      tf.keras ImageDataGenerator(...).flow_from_directory on the files
             laid out in real/ and fake/ class folders, over --passes passes;
  streamed   inputs.input_fn as run_fn calls it without the cache
             (trainer.input_cache_mb: 0): gzipped tf.Examples through TFX's
             tf_dataset_factory, the Transform graph (decode + resize, built
             by tf.Transform's Beam implementation), augmentation, prefetch,
             over --passes passes;
  cache fill inputs.read_cached: the split read and run through the Transform
             graph once, as run_fn does before training; the rate of a second
             fill, and the seconds of the first, which also loads the graph;
  cached     inputs.input_fn on that cache, per epoch once it is filled
             (what every epoch of a training run costs), over --passes passes;
  cached, fill and passes: a (second) fill plus --passes such passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from fakeface import features, sample_data  # noqa: E402
from fakeface.pipeline import config as config_lib  # noqa: E402

NOTES_BATCH = 32
NOTES_POLICY = {"augment_flip": True, "augment_rotation_degrees": 45.0, "augment_shift": 0.15,
                "augment_zoom": 0.5}
DEFAULT_RUN_IMAGES = 320


def make_images(root: str, count: int, size: int) -> List[Tuple[bytes, int]]:
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


def rate(batches, images_per_pass: int, passes: int, batch: int) -> float:
    """Images per second over `passes` passes of the data, after one warm-up batch."""
    iterator = iter(batches)
    next(iterator)
    steps = passes * images_per_pass // batch
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch / (time.perf_counter() - started)


class Fakeface:
    """The Trainer's input on one set of examples, with a Transform graph of their model input side."""

    def __init__(self, examples, workdir: str, image_size: int):
        import tensorflow_transform as tft

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from serving_latency import build_transform_graph

        transform_dir = os.path.join(workdir, f"transform{image_size}")
        if not os.path.isdir(os.path.join(transform_dir, "transform_graph")):
            build_transform_graph(image_size, [data for data, _ in examples[:2]], transform_dir)
        self.count = len(examples)
        self.accessor = write_examples(examples, os.path.join(workdir, "examples"))
        self.files = [os.path.join(workdir, "examples", "Split-train", "*")]
        self.transform_output = tft.TFTransformOutput(os.path.join(transform_dir, "transform_graph"))
        self.cache = None

    def streamed(self, config: Dict[str, Any], passes: int) -> float:
        from fakeface.components.trainer import inputs

        batch = int(config["trainer"]["batch_size"])
        return rate(inputs.input_fn(self.files, self.accessor, self.transform_output, batch, True, config),
                    self.count, passes, batch)

    def fill(self) -> Tuple[float, float]:
        """(seconds of the first fill, images per second of the next), keeping the cache for cached().

        The first fill also loads the Transform graph and traces the reader,
        which a training run does once, like the other rows' first batch.
        """
        from fakeface.components.trainer import inputs

        seconds = []
        for _ in range(2):
            started = time.perf_counter()
            self.cache = inputs.read_cached(self.files, self.accessor, self.transform_output, [])
            seconds.append(time.perf_counter() - started)
        return seconds[0], self.count / seconds[1]

    def cached(self, config: Dict[str, Any], passes: int) -> float:
        from fakeface.components.trainer import inputs

        batch = int(config["trainer"]["batch_size"])
        return rate(inputs.input_fn(self.files, self.accessor, self.transform_output, batch, True, config,
                                    cached=self.cache), self.count, passes, batch)


def custom_config(data: Dict[str, Any]) -> Dict[str, Any]:
    """The transform and trainer sections of a config, as run_fn receives them."""
    config = config_lib.to_dict(config_lib.from_dict(data))
    return {"trainer": config["trainer"], "transform": config["transform"]}


def notes_rate(folder: str, count: int, image_size: int, passes: int, batch: int, geometric: bool) -> float:
    policy = {"rotation_range": 45, "width_shift_range": 0.15, "height_shift_range": 0.15,
              "zoom_range": 0.5} if geometric else {}
    generator = tf.keras.preprocessing.image.ImageDataGenerator(rescale=1.0 / 255, horizontal_flip=True, **policy)
    flow = generator.flow_from_directory(folder, target_size=(image_size, image_size), batch_size=batch,
                                         class_mode="binary", seed=0)
    return rate(flow, count, passes, batch)


def with_fill(fill: float, per_epoch: float, passes: int) -> float:
    """Images per second over the fill and `passes` cached passes, from the two rates."""
    return passes / (1.0 / fill + passes / per_epoch)


def notes_part(args, workdir: str) -> List[Tuple[str, float]]:
    folder = os.path.join(workdir, "images")
    examples = make_images(folder, args.images, args.size)
    ours = Fakeface(examples, workdir, args.image_size)
    plain = custom_config({"transform": {"image_size": args.image_size},
                           "trainer": dict(NOTES_POLICY, batch_size=NOTES_BATCH)})
    blurred = custom_config({"transform": {"image_size": args.image_size},
                             "trainer": dict(NOTES_POLICY, batch_size=NOTES_BATCH,
                                             augment_blur_jpeg_probability=0.5)})
    rows = [("notes: ImageDataGenerator.flow_from_directory",
             notes_rate(folder, args.images, args.image_size, args.passes, NOTES_BATCH, geometric=True))]
    first_fill, fill = ours.fill()
    for name, config in (("", plain), (" + blur+JPEG (p=0.5)", blurred)):
        per_epoch = ours.cached(config, args.passes)
        rows += [(f"fakeface{name}: streamed", ours.streamed(config, args.passes)),
                 (f"fakeface{name}: cached, per epoch", per_epoch),
                 (f"fakeface{name}: cached, fill and {args.passes} passes", with_fill(fill, per_epoch, args.passes))]
    rows.insert(1, (f"fakeface: cache fill (read, decode and resize once; the first: {first_fill:.1f} s)", fill))
    return rows


def default_run_part(args, workdir: str) -> List[Tuple[str, float]]:
    folder = os.path.join(workdir, "images")
    examples = make_images(folder, DEFAULT_RUN_IMAGES, 64)
    ours = Fakeface(examples, workdir, 64)
    config = custom_config({})
    batch = int(config["trainer"]["batch_size"])
    first_fill, fill = ours.fill()
    return [("notes: ImageDataGenerator.flow_from_directory, flips",
             notes_rate(folder, DEFAULT_RUN_IMAGES, 64, args.passes, batch, geometric=False)),
            (f"fakeface: cache fill (the first: {first_fill:.1f} s)", fill),
            ("fakeface: streamed", ours.streamed(config, args.passes)),
            ("fakeface: cached, per epoch", ours.cached(config, args.passes))]


def print_table(title: str, rows: List[Tuple[str, float]]) -> None:
    baseline = rows[0][1]
    print(f"\n{title}")
    print("| pipeline | images/s | vs notes |")
    print("| --- | --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value:.0f} | {value / baseline:.1f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=320, help="side of the JPEGs drawn")
    parser.add_argument("--image-size", type=int, default=299, help="model input side")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--op-determinism", choices=("on", "off"), default="on",
                        help="on: as run_fn runs (training.make_repeatable); off: to see what it costs")
    args = parser.parse_args()
    if args.op_determinism == "on":
        from fakeface.components.trainer import training

        training.make_repeatable(0)
    workdir = args.workdir or tempfile.mkdtemp(prefix="fakeface-train-input-bench-")
    load_before = os.getloadavg()[0]
    notes = notes_part(args, os.path.join(workdir, "notes"))
    default_run = default_run_part(args, os.path.join(workdir, "default-run"))
    print(f"\n{os.cpu_count()} CPUs; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"{args.passes} passes per row; op determinism {args.op_determinism}")
    print_table(f"{args.images} JPEGs of {args.size} px -> batches of {NOTES_BATCH} at {args.image_size} px, "
                "rotation 45, shift 0.15, flip, zoom 0.5", notes)
    print_table(f"The default run's input: {DEFAULT_RUN_IMAGES} JPEGs of 64 px -> batches of "
                f"{custom_config({})['trainer']['batch_size']} at 64 px, flips", default_run)
    print(f"\nworkdir: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
