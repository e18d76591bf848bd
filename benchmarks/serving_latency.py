"""Serving latency and throughput of the pushed model and of a 299 px model, in process, on CPU.

    .venv/bin/python benchmarks/serving_latency.py [--model DIR] [--image-size 299] [--input-sizes 300,1024]

Two models: the one the Pusher pushed (the newest version under the config's
serving model dir, or --model), at its own input size; and a small-cnn at
--image-size, exported exactly as the Trainer exports it (Transform's
preprocessing_fn through tensorflow_transform's Beam implementation,
hub.KerasLayer, model.serving_signatures; untrained weights, which speed does
not depend on).

For each, and each size of sample JPEG, one run times side by side, taking
turns:

* in-graph: serving_default on the encoded bytes (decode + resize + forward,
  all inside the SavedModel: what TF Serving runs);
* REST client + in-graph, gRPC client + in-graph: the client's encoding of the
  request (serving/client.py's JSON with base64, or its PredictRequest
  serialized) and then the model: what a caller pays, without the network and
  without TF Serving's own parsing, which is not measured here;
* forward only: the Keras model on pixels decoded beforehand, the bare forward
  pass every other row is compared with;
* decode+resize only: the Transform graph's part alone;
* JPEG at 1/8 only: libjpeg decoding each file at its smallest DCT scale and
  nothing else, the floor under any in-graph decode: reading the whole file's
  entropy-coded data, which no down-scaling skips.

Reported: latency p50 / p99 at batch 1, images/s at batch 32, each path's
extra time over the bare forward pass, and the bytes of a request and of its
answer on the wire for REST and gRPC at batch 1 and 32 (answers encoded here
as TF Serving lays them out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from fakeface import features, sample_data  # noqa: E402

BATCH = 32


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


def export_model(image_size: int, sample: Sequence[bytes], work_dir: str) -> str:
    """A small-cnn SavedModel exported the way the Trainer exports it; returns its folder."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from fakeface.components.trainer import backbones
    from fakeface.components.trainer import model as model_lib

    transform_dir = build_transform_graph(image_size, sample, work_dir)
    handle = backbones.export_small_cnn(os.path.join(work_dir, "hub", backbones.SMALL_CNN))
    model = model_lib.build_model(backbones.SMALL_CNN, handle, image_size, trainable=False, dropout=0.0,
                                  optimizer=tf.keras.optimizers.Adam(1e-3))
    signatures = model_lib.serving_signatures(model, tft.TFTransformOutput(transform_dir), 0.5, "benchmark")
    export_dir = os.path.join(work_dir, "serving", "1")
    model.save(export_dir, save_format="tf", signatures=signatures, include_optimizer=False)
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(export_dir, "assets.extra", "training.json"), "w") as f:
        json.dump({"config": {"transform": {"input_policy": "resize", "image_size": image_size}}}, f)
    return export_dir


def pushed_model(path: str) -> str:
    from fakeface.serving import client as client_lib

    try:
        return client_lib.resolve_model_dir(path)
    except client_lib.ModelNotFound as e:
        raise SystemExit(f"serving_latency: {e}. Run `make run` first, or give --model.") from None


# Rows that time a part of serving, reported as their share of the forward pass.
PARTS = ("decode+resize only (in graph)", "JPEG at 1/8 only (decode floor)")


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


class ServedModel:
    """A SavedModel as the benchmark uses it: its signature, its Keras model, its Transform code."""

    def __init__(self, model_dir: str):
        import tensorflow as tf

        from fakeface.components.trainer import model as model_lib
        from fakeface.components.transform import preprocessing

        with open(os.path.join(model_dir, "assets.extra", "training.json")) as f:
            transform_config = json.load(f)["config"]["transform"]
        self.model_dir = model_dir
        self.serve = tf.saved_model.load(model_dir).signatures[features.SIGNATURE_BYTES]
        self.keras = tf.keras.models.load_model(model_dir)
        self.input_size = int(self.keras.input_shape[1])
        self.policy = transform_config["input_policy"]
        # The same code the Transform graph inside the model was built from.
        self.decode = tf.function(lambda data: preprocessing.model_images(data, transform_config)[0])
        self.forward = tf.function(lambda images: model_lib.fake_probability(self.keras, images))
        self.jpeg_floor = tf.function(lambda data: tf.map_fn(
            lambda one: tf.shape(tf.io.decode_jpeg(one, channels=3, ratio=8)), data,
            fn_output_signature=tf.int32, parallel_iterations=1))


def wire(model: ServedModel, encoded: Sequence[bytes]) -> Dict[str, int]:
    """Bytes of the client's requests and of the answers, REST (row format) and gRPC."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from fakeface.serving import client as client_lib

    outputs = {name: value.numpy() for name, value in model.serve(image_bytes=tf.constant(list(encoded))).items()}
    rows = [{name: (value[i].decode() if isinstance(value[i], bytes) else value[i].item())
             for name, value in outputs.items()} for i in range(len(encoded))]
    answer = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        answer.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return {
        "rest_request": len(json.dumps(client_lib.RestBackend("localhost").request_body(encoded)).encode()),
        "rest_answer": len(json.dumps({"predictions": rows}).encode()),
        "grpc_request": client_lib.GrpcBackend("localhost:1").request(encoded).ByteSize(),
        "grpc_answer": answer.ByteSize(),
    }


def measure(model: ServedModel, files: Dict[int, List[bytes]], latency_runs: int, throughput_runs: int) -> None:
    import tensorflow as tf

    from fakeface.serving import client as client_lib

    rest = client_lib.RestBackend("localhost")
    grpc = client_lib.GrpcBackend("localhost:1")
    print(f"\nModel: {model.model_dir}, {model.input_size} px input ({model.policy}), "
          f"{model.keras.count_params():,} parameters; TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s)")
    print(f"{'input':>6} {'path':<34} {'p50 ms':>8} {'p99 ms':>8} {'img/s @32':>10} {'vs forward':>11}")
    for size, encoded in files.items():
        batch32 = [encoded[i % len(encoded)] for i in range(BATCH)]
        decoded = {tuple(b): tf.constant(model.decode(tf.constant(b))) for b in [[e] for e in encoded] + [batch32]}

        def in_graph(b):
            return model.serve(image_bytes=tf.constant(b))

        methods = {
            "in-graph decode+resize+forward": in_graph,
            "REST client encode + in-graph": lambda b: (json.dumps(rest.request_body(b)), in_graph(b)),
            "gRPC client encode + in-graph": lambda b: (grpc.request(b).SerializeToString(), in_graph(b)),
            "forward only (pre-decoded)": lambda b: model.forward(decoded[tuple(b)]),
            "decode+resize only (in graph)": lambda b: model.decode(tf.constant(b)),
            "JPEG at 1/8 only (decode floor)": lambda b: model.jpeg_floor(tf.constant(b)),
        }
        latency = interleaved({name: lambda r, run=run: run([encoded[r % len(encoded)]])
                               for name, run in methods.items()}, latency_runs)
        throughput = interleaved({name: lambda r, run=run: run(batch32) for name, run in methods.items()},
                                 throughput_runs)
        stats = {name: (np.percentile(latency[name], 50) * 1e3, np.percentile(latency[name], 99) * 1e3,
                        BATCH / np.median(throughput[name])) for name in methods}
        base_p50, _, base_rate = stats["forward only (pre-decoded)"]
        for name, (p50, p99, rate) in stats.items():
            if name in PARTS:  # not a whole path: its share of forward
                relative = f"{p50 / base_p50 * 100:.0f}%/{base_rate / rate * 100:.0f}%"
            else:
                relative = f"{(p50 / base_p50 - 1) * 100:+.0f}%/{(base_rate / rate - 1) * 100:+.0f}%"
            print(f"{size:>5}px {name:<34} {p50:8.1f} {p99:8.1f} {rate:10.1f} {relative:>11}")
        for count, batch in ((1, encoded[:1]), (BATCH, batch32)):
            sizes = wire(model, batch)
            print(f"{size:>5}px bytes at batch {count:>2}: REST request {sizes['rest_request']:,}, answer "
                  f"{sizes['rest_answer']:,}; gRPC request {sizes['grpc_request']:,}, answer {sizes['grpc_answer']:,}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="the pushed model: a version folder or the base path of versions "
                                        "(default: the config's serving model dir)")
    parser.add_argument("--config", help="YAML config whose serving model dir holds the pushed model")
    parser.add_argument("--image-size", type=int, default=299, help="input side of the second model (default 299)")
    parser.add_argument("--input-sizes", default="300,1024",
                        help="sides of the JPEG files scored, comma-separated (default 300,1024)")
    parser.add_argument("--latency-runs", type=int, default=40, help="batch-1 calls per path (default 40)")
    parser.add_argument("--throughput-runs", type=int, default=6, help="batch-32 calls per path (default 6)")
    parser.add_argument("--distinct-images", type=int, default=8,
                        help="distinct files per input size, cycled to fill a batch (default 8)")
    args = parser.parse_args(argv)

    from fakeface.pipeline import config as config_lib

    pushed = pushed_model(args.model or config_lib.load(args.config).serving_model_dir_path)
    input_sizes = [int(s) for s in args.input_sizes.split(",")]
    files = {size: [sample_data.encode_jpeg(sample_data.render_image(
        sample_data.SOURCES[i % len(sample_data.SOURCES)], i, size, seed=0)) for i in range(args.distinct_images)]
        for size in input_sizes}
    print("Sample JPEGs, mean bytes: " + ", ".join(
        f"{size} px {np.mean([len(f) for f in encoded]):,.0f}" for size, encoded in files.items()))
    print(f"Load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="fakeface-bench-") as work_dir:
        fresh = export_model(args.image_size, files[input_sizes[0]][:2], work_dir)
        for model_dir in (pushed, fresh):
            measure(ServedModel(model_dir), files, args.latency_runs, args.throughput_runs)
    print(f"Load average at end: {os.getloadavg()[0]:.1f}")
    print("vs forward: time per image relative to the bare forward pass, batch 1 (p50) / batch 32;\n"
          "extra time for whole paths, share of it for the parts (decode+resize, JPEG at 1/8).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
