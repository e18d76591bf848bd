"""Trainer's run_fn: fine-tunes the backbone and exports the serving model.

The Trainer reads the raw examples and applies the Transform graph itself,
instead of reading materialized Transform output: decoded float images are an
order of magnitude larger than the JPEGs they came from.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any, Dict, List

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from fakeface import features
from fakeface.components.trainer import model as model_lib

_AUTOTUNE = tf.data.AUTOTUNE


def make_augmenter(trainer_config: Dict[str, Any]) -> tf.keras.Sequential:
    """Training-only augmentation of a batch of [0, 1] images.

    Built once, outside the input pipeline's traced functions, because its
    layers own random-generator state.
    """
    seed = int(trainer_config["seed"])
    layers = []
    if trainer_config["augment_flip"]:
        layers.append(tf.keras.layers.RandomFlip("horizontal", seed=seed))
    return tf.keras.Sequential(layers, name="augmentation")


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, training: bool,
             trainer_config: Dict[str, Any]) -> tf.data.Dataset:
    """Batches of (images, labels); shuffled and augmented only when training."""
    seed = int(trainer_config["seed"])
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=training,
                                       shuffle_seed=seed, shuffle_buffer_size=1024),
        tf_transform_output.raw_metadata.schema)
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(raw: Dict[str, tf.Tensor]):
        transformed = tft_layer({features.IMAGE_BYTES: raw[features.IMAGE_BYTES],
                                 features.LABEL: raw[features.LABEL]})
        return transformed[features.IMAGE], tf.reshape(transformed[features.LABEL], [-1, 1])

    dataset = dataset.map(transform, num_parallel_calls=_AUTOTUNE)
    if training:
        augmenter = make_augmenter(trainer_config)
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y),
                              num_parallel_calls=_AUTOTUNE)
    return dataset.prefetch(_AUTOTUNE)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point."""
    config = fn_args.custom_config
    trainer_config = config["trainer"]
    tf.keras.utils.set_random_seed(int(trainer_config["seed"]))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(trainer_config["batch_size"])
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                     batch_size, True, trainer_config)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                          batch_size, False, trainer_config)

    model = model_lib.build_model(
        handle=config["backbone_handle"], image_size=int(config["image_size"]),
        trainable=bool(trainer_config["backbone_trainable"]),
        dropout=float(trainer_config["dropout"]),
        learning_rate=float(trainer_config["learning_rate"]))
    model.summary(print_fn=logging.info)
    history = model.fit(
        train, validation_data=evaluation, epochs=int(trainer_config["epochs"]), verbose=2,
        callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])

    model_version = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    signatures = model_lib.serving_signatures(
        model, tf_transform_output, float(config["decision_threshold"]), model_version)
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures)

    # What was trained, and how, travels with the model.
    record = {"model_version": model_version, "config": config,
              "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    extra_dir = os.path.join(fn_args.serving_model_dir, "assets.extra")
    tf.io.gfile.makedirs(extra_dir)
    with tf.io.gfile.GFile(os.path.join(extra_dir, "training.json"), "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
