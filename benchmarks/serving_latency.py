"""In-process serving latency and throughput of the exported model, on CPU.

    .venv/bin/python benchmarks/serving_latency.py [--image-size 299] [--input-sizes 300,1024]

Builds, offline and with the project's own code, a model exported exactly as
the Trainer exports it (Transform's preprocessing_fn run through
tensorflow_transform's Beam implementation, the small-cnn backbone loaded
through hub.KerasLayer, model.build_model, model.serving_signatures), plus one
extra signature, `forward`, that is the bare forward pass on decoded pixels.
Weights are untrained: speed does not depend on them.

Three ways of scoring the same JPEG files with the same model are timed:

* in-graph: `serving_default` on the encoded bytes (decode + resize + forward,
  all inside the SavedModel; what TF Serving runs);
* notes: the founding notes' approach: Pillow decodes, NumPy resizes
  (bilinear), Keras `model.predict` on the same in-memory Keras model;
* PIL+NumPy, then forward: the notes' preprocessing feeding the `forward`
  signature, which separates the cost of their preprocessing from that of
  Keras `predict`'s per-call machinery;
* forward: the `forward` signature on pixels decoded beforehand, i.e. the
  model alone. Every row's overhead is measured against it;
* decode+resize only: the Transform graph alone, the part the in-graph path
  adds to the forward pass.

Reported: latency p50 / p99 at batch size 1 and throughput at batch size 32.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fakeface import features, sample_data  # noqa: E402


def build_transform_graph(image_size: int, sample: Sequence[bytes], out_dir: str) -> str:
    """Runs the project's preprocessing_fn through tf.Transform's Beam implementation."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    import tensorflow_transform as tft
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from fakeface.components.transform import preprocessing

    spec = {features.IMAGE_BYTES: tf.io.FixedLenFeature([], tf.string),
            features.LABEL: tf.io.FixedLenFeature([], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    rows = [{features.IMAGE_BYTES: data, features.LABEL: i % 2} for i, data in enumerate(sample)]
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        raw = pipeline | beam.Create(rows)
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing.preprocessing_fn(
                inputs, {"input_policy": "resize", "image_size": image_size}))
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(out_dir, "transform_graph"))
    # serving_signatures reads the raw feature spec from here, as the Transform component writes it.
    metadata_io.write_metadata(metadata, os.path.join(out_dir, "transform_graph",
                                                      tft.TFTransformOutput.RAW_METADATA_DIR))
    return os.path.join(out_dir, "transform_graph")


def export_model(image_size: int, sample: Sequence[bytes], work_dir: str):
    """(Keras model, exported SavedModel dir) built the way the Trainer builds and exports them."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from fakeface.components.trainer import backbones
    from fakeface.components.trainer import model as model_lib

    transform_dir = build_transform_graph(image_size, sample, work_dir)
    handle = backbones.export_small_cnn(os.path.join(work_dir, "hub", backbones.SMALL_CNN))
    model = model_lib.build_model(backbones.SMALL_CNN, handle, image_size, trainable=False, dropout=0.0,
                                  optimizer=tf.keras.optimizers.Adam(1e-3))
    signatures = model_lib.serving_signatures(model, tft.TFTransformOutput(transform_dir), 0.5, "benchmark")

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32,
                                                 name=features.IMAGE)])
    def forward(image):
        return {features.FAKE_PROBABILITY: tf.reshape(model(image, training=False), [-1])}

    export_dir = os.path.join(work_dir, "serving", "1")
    model.save(export_dir, save_format="tf", signatures={**signatures, "forward": forward.get_concrete_function()})
    return model, export_dir


def numpy_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of float [h, w, 3] to [size, size, 3] (half-pixel centres, as tf.image)."""
    h, w = pixels.shape[:2]
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = pixels[y0][:, x0] * (1 - wx) + pixels[y0][:, x1] * wx
    bottom = pixels[y1][:, x0] * (1 - wx) + pixels[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def notes_preprocess(encoded: Sequence[bytes], size: int) -> np.ndarray:
    batch = []
    for data in encoded:
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
        batch.append(numpy_resize(pixels, size))
    return np.stack(batch).astype(np.float32)


def interleaved(methods: Dict[str, Callable[[int], object]], repeats: int) -> Dict[str, List[float]]:
    """Seconds per call of each method; in round r every method is called with r, in turn.

    Taking turns spreads any load from other processes on a shared machine
    evenly over the methods, so their ratios stay meaningful.
    """
    for call in methods.values():
        call(0)  # warm-up: tracing, memory pools
    durations: Dict[str, List[float]] = {name: [] for name in methods}
    for round_ in range(repeats):
        for name, call in methods.items():
            started = time.perf_counter()
            call(round_)
            durations[name].append(time.perf_counter() - started)
    return durations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=299, help="model input side (default 299)")
    parser.add_argument("--input-sizes", default="300,1024",
                        help="sides of the JPEG files scored, comma-separated (default 300,1024)")
    parser.add_argument("--latency-runs", type=int, default=40, help="batch-1 calls per method (default 40)")
    parser.add_argument("--throughput-runs", type=int, default=6, help="batch-32 calls per method (default 6)")
    parser.add_argument("--distinct-images", type=int, default=8,
                        help="distinct files per input size, cycled to fill a batch (default 8)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    input_sizes = [int(s) for s in args.input_sizes.split(",")]
    files = {size: [sample_data.encode_jpeg(sample_data.render_image(
        sample_data.SOURCES[i % len(sample_data.SOURCES)], i, size, seed=0)) for i in range(args.distinct_images)]
        for size in input_sizes}

    with tempfile.TemporaryDirectory(prefix="fakeface-bench-") as work_dir:
        keras_model, export_dir = export_model(args.image_size, files[input_sizes[0]][:2], work_dir)
        loaded = tf.saved_model.load(export_dir)
        serve, forward = loaded.signatures["serving_default"], loaded.signatures["forward"]

        print(f"\nModel: small-cnn + sigmoid head, {args.image_size} px input, "
              f"{keras_model.count_params():,} parameters; TensorFlow {tf.__version__}, "
              f"{os.cpu_count()} CPU(s)")
        print(f"{'input':>6} {'method':<32} {'p50 ms':>8} {'p99 ms':>8} {'img/s @32':>10} {'vs forward':>11}")
        for size in input_sizes:
            encoded = files[size]
            batch32 = [encoded[i % len(encoded)] for i in range(32)]

            def decode(b):
                return keras_model.tft_layer({features.IMAGE_BYTES: tf.constant(b)})[features.IMAGE]

            # Pixels for the bare forward pass, decoded beforehand by the model's own graph.
            decoded = {tuple(b): tf.constant(decode(b)) for b in [[e] for e in encoded] + [batch32]}
            methods = {
                "in-graph decode+resize+forward": lambda b: serve(image_bytes=tf.constant(b)),
                "notes: PIL+NumPy+Keras predict": lambda b: keras_model.predict(
                    notes_preprocess(b, args.image_size), batch_size=len(b), verbose=0),
                # Splits the notes' row: its preprocessing, minus Keras predict's per-call cost.
                "PIL+NumPy, then forward": lambda b: forward(
                    image=tf.constant(notes_preprocess(b, args.image_size))),
                "forward only (pre-decoded)": lambda b: forward(image=decoded[tuple(b)]),
                "decode+resize only (in graph)": decode,
            }
            latency = interleaved({name: lambda r, run=run: run([encoded[r % len(encoded)]])
                                   for name, run in methods.items()}, args.latency_runs)
            throughput = interleaved({name: lambda r, run=run: run(batch32)
                                      for name, run in methods.items()}, args.throughput_runs)
            stats = {name: (np.percentile(latency[name], 50) * 1e3, np.percentile(latency[name], 99) * 1e3,
                            32 / np.median(throughput[name])) for name in methods}
            base_p50, _, base_rate = stats["forward only (pre-decoded)"]
            for name, (p50, p99, rate) in stats.items():
                if name == "decode+resize only (in graph)":  # a part, not a whole: its share of forward
                    relative = f"{p50 / base_p50 * 100:.0f}%/{base_rate / rate * 100:.0f}%"
                else:
                    relative = f"{(p50 / base_p50 - 1) * 100:+.0f}%/{(base_rate / rate - 1) * 100:+.0f}%"
                print(f"{size:>5}px {name:<32} {p50:8.1f} {p99:8.1f} {rate:10.1f} {relative:>11}")
        print("vs forward: time per image relative to the bare forward pass, batch 1 (p50) / batch 32;\n"
              "extra time for whole paths, share of it for decode+resize alone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
