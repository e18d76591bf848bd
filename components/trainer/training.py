"""Trainer's run_fn: fine-tunes the backbone and exports the serving model.

The Trainer reads the raw examples and applies the Transform graph itself,
instead of reading materialized Transform output: decoded float images are an
order of magnitude larger than the JPEGs they came from.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from fakeface import features, metrics
from fakeface.components.trainer import model as model_lib

_AUTOTUNE = tf.data.AUTOTUNE


def make_augmenter(trainer_config: Dict[str, Any]) -> tf.keras.Sequential:
    """Training-only augmentation of a batch of [0, 1] images, as configured.

    Built once, outside the input pipeline's traced functions, because its
    layers own random-generator state.
    """
    seed = int(trainer_config["seed"])
    layers = []
    if trainer_config["augment_flip"]:
        layers.append(tf.keras.layers.RandomFlip("horizontal", seed=seed))
    if trainer_config["augment_rotation_degrees"]:
        layers.append(tf.keras.layers.RandomRotation(
            trainer_config["augment_rotation_degrees"] / 360.0, fill_mode="nearest", seed=seed + 1))
    if trainer_config["augment_shift"]:
        shift = trainer_config["augment_shift"]
        layers.append(tf.keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed + 2))
    if trainer_config["augment_zoom"]:
        zoom = trainer_config["augment_zoom"]
        layers.append(tf.keras.layers.RandomZoom((-zoom, zoom), fill_mode="nearest", seed=seed + 3))
    return tf.keras.Sequential(layers, name="augmentation")


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, training: bool,
             trainer_config: Dict[str, Any]) -> tf.data.Dataset:
    """Batches of (images, labels); shuffled and augmented only when training."""
    seed = int(trainer_config["seed"])
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        # Training repeats, with epochs of a known number of steps, so that a
        # checkpoint taken mid-epoch can be resumed at its step.
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=None if training else 1,
                                       shuffle=training,
                                       shuffle_seed=seed, shuffle_buffer_size=1024),
        tf_transform_output.raw_metadata.schema)
    if trainer_config["train_sources"]:
        dataset = only_sources(dataset, trainer_config["train_sources"], batch_size)
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


def only_sources(dataset: tf.data.Dataset, sources: List[str], batch_size: int) -> tf.data.Dataset:
    """The batches of raw examples re-formed from the given sources' examples only."""
    wanted = tf.constant(sorted(sources))
    kept = (features.IMAGE_BYTES, features.LABEL, features.SOURCE)
    return (dataset.map(lambda raw: {name: raw[name] for name in kept})
            .unbatch()
            .filter(lambda raw: tf.reduce_any(tf.equal(tf.reshape(raw[features.SOURCE], [-1])[0], wanted)))
            .batch(batch_size))


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy named by trainer.strategy (see pipeline/config.py)."""
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def scaled_learning_rate(trainer_config: Dict[str, Any]) -> float:
    """The linear scaling rule: the configured rate is for learning_rate_batch_size."""
    return (float(trainer_config["learning_rate"]) * int(trainer_config["batch_size"])
            / int(trainer_config["learning_rate_batch_size"]))


def count_labels(file_patterns: List[str], sources: Optional[List[str]] = None) -> Dict[int, int]:
    """Examples per label in gzipped tf.Example files, of the given sources if any."""
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    spec = {features.LABEL: tf.io.FixedLenFeature([], tf.int64),
            features.SOURCE: tf.io.FixedLenFeature([], tf.string)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda record: tf.io.parse_single_example(record, spec))
    counts: Dict[int, int] = {}
    for example in dataset.as_numpy_iterator():
        if sources and example[features.SOURCE].decode() not in sources:
            continue
        label = int(example[features.LABEL])
        counts[label] = counts.get(label, 0) + 1
    return counts


def choose_threshold(model: tf.keras.Model, evaluation: tf.data.Dataset,
                     config: Dict[str, Any]) -> Dict[str, Any]:
    """The decision threshold shipped with the model, and how it was chosen.

    Calibrated on the eval split, never on test: at most target_fpr of the
    eval split's real images are called fake, and as many fakes as can be at
    that rate (see metrics.threshold_for_fpr).
    """
    fixed = float(config["decision_threshold"])
    if not config["calibrate_threshold"]:
        return {"threshold": fixed, "method": "fixed"}
    labels, scores = [], []
    for images, batch_labels in evaluation:
        scores.append(tf.reshape(model(images, training=False), [-1]).numpy())
        labels.append(tf.reshape(batch_labels, [-1]).numpy())
    labels, scores = np.concatenate(labels), np.concatenate(scores)
    real = scores[labels == features.REAL]
    if not real.size:
        logging.warning("The eval split holds no real image; shipping the fixed threshold %s", fixed)
        return {"threshold": fixed, "method": "fixed: no real image in the eval split"}
    target = float(config["target_fpr"])
    threshold = metrics.threshold_for_fpr(real, target, scores[labels != features.REAL])
    rates = metrics.rates_at_threshold(labels, scores, threshold)
    logging.info("Decision threshold %.6f: eval false-positive rate %.4f, detection rate %.4f",
                 threshold, rates["false_positive_rate"], rates["recall"])
    return {"threshold": threshold, "method": "calibrated on the eval split", "target_fpr": target,
            "eval_real_images": int(real.size), "eval_fake_images": int(labels.size - real.size),
            "eval_false_positive_rate": rates["false_positive_rate"],
            "eval_detection_rate": rates["recall"]}


def class_weights(counts: Dict[int, int]) -> Optional[Dict[int, float]]:
    """Weights that give both classes equal total weight; None if one is missing."""
    if len(counts) < 2 or not all(counts.values()):
        return None
    total = sum(counts.values())
    return {label: total / (len(counts) * count) for label, count in counts.items()}


def checkpoint_dir(fn_args: tfx.components.FnArgs) -> str:
    """Where a run's checkpoints live: keyed by what it trains on and how.

    TFX gives every execution, a retry included, fresh output folders, so the
    checkpoints sit beside them under a key of the inputs and settings: a
    Trainer that runs again after being killed finds its own, and any other
    Trainer starts afresh.
    """
    key = json.dumps([sorted(fn_args.train_files), sorted(fn_args.eval_files),
                      fn_args.transform_output, fn_args.custom_config], sort_keys=True)
    trainer_root = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
    return os.path.join(trainer_root, "checkpoints", hashlib.sha256(key.encode()).hexdigest()[:16])


def save_curves(history_csv: str, png_path: str) -> None:
    """Loss, accuracy and AUC per epoch, train and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    with tf.io.gfile.GFile(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, metric in zip(axes, ("loss", "accuracy", "auc")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + metric in rows[0]:
                axis.plot(epochs, [float(r[prefix + metric]) for r in rows], marker="o", label=label)
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    with tf.io.gfile.GFile(png_path, "wb") as f:
        f.write(buffer.getvalue())


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

    strategy = distribution_strategy(trainer_config["strategy"])
    logging.info("Training on %d replica(s), global batch %d", strategy.num_replicas_in_sync, batch_size)
    with strategy.scope():
        model = model_lib.build_model(
            handle=config["backbone_handle"], image_size=int(config["image_size"]),
            trainable=bool(trainer_config["backbone_trainable"]),
            dropout=float(trainer_config["dropout"]),
            learning_rate=scaled_learning_rate(trainer_config))
    model.summary(print_fn=logging.info)

    checkpoints = checkpoint_dir(fn_args)
    # Beside the checkpoints, so that a resumed run's curves hold every epoch.
    history_csv = checkpoints + "-history.csv"
    tf.io.gfile.makedirs(os.path.dirname(checkpoints))
    callbacks = [
        tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
        tf.keras.callbacks.BackupAndRestore(
            checkpoints, save_freq=int(trainer_config["checkpoint_every_steps"])),
        tf.keras.callbacks.CSVLogger(history_csv, append=True),
    ]
    if int(trainer_config["early_stopping_patience"]):
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=int(trainer_config["early_stopping_patience"]),
            restore_best_weights=True))
    label_counts = count_labels(fn_args.train_files, trainer_config["train_sources"])
    if len(label_counts) < 2:
        raise ValueError(f"the training split of sources {trainer_config['train_sources'] or 'all'} "
                         f"holds only {label_counts}: a detector needs real and fake images")
    weights = class_weights(label_counts) if trainer_config["class_weights"] else None
    steps_per_epoch = max(1, math.ceil(sum(label_counts.values()) / batch_size))
    logging.info("Training examples by label: %s; class weights: %s", label_counts, weights)
    history = model.fit(train, validation_data=evaluation, epochs=int(trainer_config["epochs"]),
                        steps_per_epoch=steps_per_epoch, class_weight=weights, verbose=2,
                        callbacks=callbacks)
    curves_csv = os.path.join(fn_args.model_run_dir, "training_curves.csv")
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    tf.io.gfile.copy(history_csv, curves_csv, overwrite=True)
    tf.io.gfile.remove(history_csv)
    save_curves(curves_csv, os.path.join(fn_args.model_run_dir, "training_curves.png"))

    decision = choose_threshold(model, evaluation, config)
    model_version = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    signatures = model_lib.serving_signatures(
        model, tf_transform_output, decision["threshold"], model_version)
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures)

    # What was trained, and how, travels with the model.
    record = {"model_version": model_version, "config": config, "class_weights": weights,
              "decision": decision,
              "replicas": strategy.num_replicas_in_sync,
              "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    extra_dir = os.path.join(fn_args.serving_model_dir, "assets.extra")
    tf.io.gfile.makedirs(extra_dir)
    with tf.io.gfile.GFile(os.path.join(extra_dir, "training.json"), "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
    curves_png = os.path.join(fn_args.model_run_dir, "training_curves.png")
    if tf.io.gfile.exists(curves_png):
        # For the evaluation report, which sees the model but not its run folder.
        tf.io.gfile.copy(curves_png, os.path.join(extra_dir, "training_curves.png"), overwrite=True)
