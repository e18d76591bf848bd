"""The first request after a model loads, with and without its warm-up requests replayed.

    .venv/bin/python benchmarks/serving_warmup.py [--model DIR] [--repeats 3]

Each measurement is a fresh process, as a freshly loaded version is: it loads
the pushed model and either asks it at once, or first replays every record of
assets.extra/tf_serving_warmup_requests through the signature it names, as TF
Serving does on load (in process here: no model server binary is available).
It then times the first request (one 300 px sample JPEG), and ten more for the
steady state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def child(model_dir: str, warm: bool) -> dict:
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from fakeface import features, sample_data

    started = time.perf_counter()
    signatures = tf.saved_model.load(model_dir).signatures
    loaded = time.perf_counter() - started
    records = 0
    if warm:
        path = os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            if log.HasField("predict_log"):
                request = log.predict_log.request
                signatures[request.model_spec.signature_name](
                    **{name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()})
            else:
                request = log.classify_log.request
                signatures[request.model_spec.signature_name](inputs=tf.constant(
                    [example.SerializeToString() for example in request.input.example_list.examples]))
            records += 1
    warmed = time.perf_counter() - started - loaded
    image = tf.constant([sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[2], 7, 300, seed=1))])
    serve = signatures[features.SIGNATURE_BYTES]
    times = []
    for _ in range(11):
        started = time.perf_counter()
        serve(image_bytes=image)
        times.append(time.perf_counter() - started)
    return {"load_s": loaded, "warmup_s": warmed, "records": records, "first_ms": times[0] * 1e3,
            "steady_ms": float(np.median(times[1:])) * 1e3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="the pushed model: a version folder or the base path of versions "
                                        "(default: the config's serving model dir)")
    parser.add_argument("--config", help="YAML config whose serving model dir holds the pushed model")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case (default 3)")
    parser.add_argument("--child", choices=("cold", "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from fakeface.pipeline import config as config_lib
    from fakeface.serving import client as client_lib

    model_dir = client_lib.resolve_model_dir(args.model or config_lib.load(args.config).serving_model_dir_path)
    if args.child:
        print(json.dumps(child(model_dir, args.child == "warm")))
        return 0
    print(f"Model: {model_dir}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':<32} {'load s':>7} {'warm-up s':>9} {'first request ms':>17} {'then, p50 ms':>13}")
    for case in ("cold", "warm") * args.repeats:
        done = subprocess.run([sys.executable, __file__, "--model", model_dir, "--child", case],
                              capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        name = "no warm-up" if case == "cold" else f"after {result['records']} warm-up records"
        print(f"{name:<32} {result['load_s']:7.1f} {result['warmup_s']:9.1f} {result['first_ms']:17.1f} "
              f"{result['steady_ms']:13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
