"""Training step throughput on CPU: the small backbone and ResNet50.

    .venv/bin/python benchmarks/train_step_throughput.py [--steps 10]

Images per second of full training steps (forward, backward, update) on
in-memory random images, after one warm-up epoch that traces the graph:

  small-cnn at 64 px   the embedded default, built by model.build_model
                       through hub.KerasLayer, Adam, batch 32;
  ResNet50 at 224 px   tf.keras.applications.ResNet50(weights=None) with the
                       same sigmoid head, SGD with momentum, batch 16: the
                       size of the notes' BiT ResNet50x1, whose weights
                       cannot be downloaded here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fakeface.components.trainer import backbones, model as model_lib  # noqa: E402


def small_cnn(workdir: str, side: int) -> tf.keras.Model:
    handle = backbones.export_small_cnn(os.path.join(workdir, backbones.SMALL_CNN))
    return model_lib.build_model(backbones.SMALL_CNN, handle, side, trainable=True, dropout=0.2,
                                 optimizer=tf.keras.optimizers.Adam(2e-3))


def resnet50(side: int) -> tf.keras.Model:
    images = tf.keras.Input(shape=(side, side, 3))
    base = tf.keras.applications.ResNet50(include_top=False, pooling="avg", weights=None,
                                          input_shape=(side, side, 3))
    probability = tf.keras.layers.Dense(1, activation="sigmoid")(base(images * 255.0))
    model = tf.keras.Model(images, probability)
    model.compile(optimizer=tf.keras.optimizers.SGD(3e-3, momentum=0.9), loss="binary_crossentropy")
    return model


def images_per_second(model: tf.keras.Model, side: int, batch: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    images = rng.random((batch * 2, side, side, 3)).astype(np.float32)
    labels = (np.arange(batch * 2) % 2).astype(np.float32).reshape(-1, 1)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat().prefetch(2)
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # traces the step
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="fakeface-train-step-bench-")
    rows = [
        ("small-cnn", 64, 32, images_per_second(small_cnn(workdir, 64), 64, 32, args.steps * 3)),
        ("ResNet50 (weights=None)", 224, 16, images_per_second(resnet50(224), 224, 16, args.steps)),
    ]
    print(f"\nCPU training steps; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end")
    print("| backbone | input | batch | images/s | s/step |")
    print("| --- | --- | --- | --- | --- |")
    for name, side, batch, value in rows:
        print(f"| {name} | {side} px | {batch} | {value:.1f} | {batch / value:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
