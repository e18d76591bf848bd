"""One training step with trainer.mixed_precision "on" over two logical CPU devices.

    python mixed_precision_step.py WORK_DIR BACKBONE SIDE

Logical devices must be configured before TensorFlow initialises, hence a
process of its own (one per backbone: two MirroredStrategy models in one
eager process clash in their collectives). Prints one JSON line: the
replicas, the dtypes seen and whether the loss was finite.
"""

import json
import math
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from fakeface.components.trainer import backbones, training  # noqa: E402
from fakeface.pipeline import config as config_lib  # noqa: E402
from fakeface.pipeline import pipeline  # noqa: E402


def step(work_dir: str, backbone: str, side: int) -> dict:
    config = config_lib.from_dict({
        "runs_root": work_dir, "transform": {"image_size": side},
        "trainer": {"backbone": backbone, "backbone_handle": "none" if backbone == "xception" else "",
                    "mixed_precision": "on", "strategy": "mirrored", "batch_size": 4}})
    custom = pipeline.trainer_custom_config(config)
    backbones.ensure_local_backbone(backbone, custom["backbone_handle"])
    strategy = training.distribution_strategy("mirrored")
    model = training.create_model(custom, total_steps=10, strategy=strategy)
    # Tracing Xception's gradient graph over two replicas takes a minute on CPU.
    model.run_eagerly = backbone == "xception"
    backbone_layer = model.get_layer("xception" if backbone == "xception" else "backbone")
    images = np.random.default_rng(0).random((4, side, side, 3)).astype(np.float32)
    history = model.fit(images, np.array([[0], [1], [0], [1]], np.float32), batch_size=4, epochs=1, verbose=0)
    return {"replicas": strategy.num_replicas_in_sync, "output_dtype": model.output.dtype.name,
            "backbone_compute_dtype": backbone_layer.compute_dtype,
            "loss_finite": math.isfinite(history.history["loss"][0])}


if __name__ == "__main__":
    print(json.dumps(step(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
