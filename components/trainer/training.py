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

from fakeface import features, metrics, progress
from fakeface.components.trainer import augmentation, optimization
from fakeface.components.trainer import model as model_lib
from fakeface.components.transform import preprocessing

_AUTOTUNE = tf.data.AUTOTUNE


def model_input_size(transform_config: Dict[str, Any]) -> int:
    """The side of the square images the model takes, under the input policy."""
    if transform_config["input_policy"] == "crop":
        return int(transform_config["crop_size"])
    return int(transform_config["image_size"])


def random_crop(index: tf.Tensor, image: tf.Tensor, size: int, seed: int) -> tf.Tensor:
    """One crop of `size` at native resolution, where (seed, index) decides."""
    image = preprocessing.pad_to_at_least(image, size)
    return tf.image.stateless_random_crop(
        image, [size, size, 3], seed=augmentation.stream_seed(seed, index, augmentation.CROP))


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, training: bool,
             config: Dict[str, Any], per_image: bool = False) -> tf.data.Dataset:
    """Batches of (images [batch, side, side, 3], labels); shuffled and augmented only when training.

    Under the "crop" input policy, training takes one random native-resolution
    crop per image, decoded from the raw bytes by the Transform code; the
    evaluation data is the Transform graph's deterministic tiles, each scored
    as an example of its image's label (served, the tiles' probabilities are
    averaged per image instead). `per_image` keeps each image's tiles
    together, [batch, tiles, side, side, 3], for scoring as served.
    """
    trainer_config, transform_config = config["trainer"], config["transform"]
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
    blur_jpeg = augmentation.make_blur_jpeg(trainer_config) if training else None
    crop = transform_config["input_policy"] == "crop"

    if training and crop:
        size = model_input_size(transform_config)
        dataset = dataset.map(lambda raw: (tf.reshape(raw[features.IMAGE_BYTES], [-1]),
                                           tf.reshape(raw[features.LABEL], [-1, 1])))

        def crop_one(index, example):
            encoded, label = example
            image = random_crop(index, preprocessing.decode(encoded), size, seed)
            return (blur_jpeg(index, image) if blur_jpeg else image), label

        dataset = _per_image(dataset, crop_one, batch_size)
    else:
        tft_layer = tf_transform_output.transform_features_layer()

        def transform(raw: Dict[str, tf.Tensor]):
            transformed = tft_layer({features.IMAGE_BYTES: raw[features.IMAGE_BYTES],
                                     features.LABEL: raw[features.LABEL]})
            images, labels = transformed[features.IMAGE], tf.reshape(transformed[features.LABEL], [-1, 1])
            if images.shape.rank == 5 and not per_image:  # tiles: one example per tile
                labels = tf.repeat(labels, images.shape[1], axis=0)
                images = tf.reshape(images, [-1, *images.shape[2:]])
            return images, labels

        dataset = dataset.map(transform, num_parallel_calls=_AUTOTUNE)
        if blur_jpeg:
            dataset = _per_image(dataset, lambda index, example: (blur_jpeg(index, example[0]), example[1]),
                                 batch_size)
    geometric = augmentation.make_geometric(trainer_config) if training else None
    if geometric:
        dataset = dataset.enumerate().map(lambda index, batch: (geometric(index, batch[0]), batch[1]),
                                          num_parallel_calls=_AUTOTUNE)
    return dataset.prefetch(_AUTOTUNE)


def _per_image(dataset: tf.data.Dataset, fn, batch_size: int) -> tf.data.Dataset:
    """Batches re-formed after fn(index, (image, label)) ran on each image, index its place in the stream."""
    return dataset.unbatch().enumerate().map(fn, num_parallel_calls=_AUTOTUNE).batch(batch_size)


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


def precision_policy(setting: str) -> str:
    """The Keras dtype policy for trainer.mixed_precision (see pipeline/config.py)."""
    if setting == "on" or (setting == "auto" and tf.config.list_logical_devices("GPU")):
        return "mixed_float16"
    return "float32"


def create_model(config: Dict[str, Any], total_steps: int, strategy: tf.distribute.Strategy
                 ) -> tf.keras.Model:
    """The compiled model run_fn trains: backbone, precision and optimizer as configured."""
    trainer_config = config["trainer"]
    previous = tf.keras.mixed_precision.global_policy()
    # Layers keep the policy they were built with; the global one is restored
    # so that nothing built later in this process inherits it.
    tf.keras.mixed_precision.set_global_policy(precision_policy(trainer_config["mixed_precision"]))
    try:
        with strategy.scope():
            return model_lib.build_model(
                backbone=trainer_config["backbone"], handle=config["backbone_handle"],
                image_size=model_input_size(config["transform"]),
                trainable=bool(trainer_config["backbone_trainable"]),
                dropout=float(trainer_config["dropout"]),
                optimizer=optimization.make_optimizer(trainer_config, total_steps))
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


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
        scores.append(model_lib.fake_probability(model, images).numpy())
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


def write_curves(history_csv: str, curves_csv: str) -> None:
    """The per-epoch log as curves, one row per epoch.

    A resumed run repeats the epochs after its last checkpoint, and the log,
    appended to by every attempt, holds them twice: the last row of an epoch
    is the one the final model went through.
    """
    with tf.io.gfile.GFile(history_csv) as f:
        rows = list(csv.DictReader(f))
    by_epoch = {int(row["epoch"]): row for row in rows}
    with tf.io.gfile.GFile(curves_csv, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(by_epoch[epoch] for epoch in sorted(by_epoch))


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
    # The same seed, examples and config give the same model (docs/training.md).
    tf.config.experimental.enable_op_determinism()
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(trainer_config["batch_size"])
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                     batch_size, True, config)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                          batch_size, False, config)
    label_counts = count_labels(fn_args.train_files, trainer_config["train_sources"])
    if len(label_counts) < 2:
        raise ValueError(f"the training split of sources {trainer_config['train_sources'] or 'all'} "
                         f"holds only {label_counts}: a detector needs real and fake images")
    steps_per_epoch = max(1, math.ceil(sum(label_counts.values()) / batch_size))
    epochs = int(trainer_config["epochs"])

    strategy = distribution_strategy(trainer_config["strategy"])
    logging.info("Training on %d replica(s), global batch %d", strategy.num_replicas_in_sync, batch_size)
    model = create_model(config, epochs * steps_per_epoch, strategy)
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
        tf.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress.epoch_ended(epoch + 1, epochs, logs)),
    ]
    if int(trainer_config["early_stopping_patience"]):
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=int(trainer_config["early_stopping_patience"]),
            restore_best_weights=True))
    weights = class_weights(label_counts) if trainer_config["class_weights"] else None
    logging.info("Training examples by label: %s; class weights: %s", label_counts, weights)
    history = model.fit(train, validation_data=evaluation, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, class_weight=weights, verbose=2,
                        callbacks=callbacks)
    curves_csv = os.path.join(fn_args.model_run_dir, "training_curves.csv")
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    write_curves(history_csv, curves_csv)
    tf.io.gfile.remove(history_csv)
    save_curves(curves_csv, os.path.join(fn_args.model_run_dir, "training_curves.png"))

    # Scored per image as served, tiles averaged, not per tile as validated.
    decision = choose_threshold(model, input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                                                batch_size, False, config, per_image=True), config)
    model_version = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    signatures = model_lib.serving_signatures(
        model, tf_transform_output, decision["threshold"], model_version)
    # Without the optimizer: serving and evaluation never need it, its slots
    # would double or triple the export, and its schedule is a fakeface class
    # that tf.keras.models.load_model could not rebuild where fakeface is not
    # imported. Resuming uses the checkpoints, not this export.
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures, include_optimizer=False)

    # What was trained, and how, travels with the model.
    record = {"model_version": model_version, "config": config, "class_weights": weights,
              "decision": decision,
              "replicas": strategy.num_replicas_in_sync,
              "optimizer": optimization.optimizer_kind(trainer_config["optimizer"], trainer_config["backbone"]),
              "precision_policy": precision_policy(trainer_config["mixed_precision"]),
              "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    extra_dir = os.path.join(fn_args.serving_model_dir, "assets.extra")
    tf.io.gfile.makedirs(extra_dir)
    with tf.io.gfile.GFile(os.path.join(extra_dir, "training.json"), "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
    curves_png = os.path.join(fn_args.model_run_dir, "training_curves.png")
    if tf.io.gfile.exists(curves_png):
        # For the evaluation report, which sees the model but not its run folder.
        tf.io.gfile.copy(curves_png, os.path.join(extra_dir, "training_curves.png"), overwrite=True)
