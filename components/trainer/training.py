"""Trainer's run_fn: trains the detector, chooses its threshold, exports and records it.

The Trainer reads the raw examples and applies the Transform graph itself
(components/trainer/inputs.py), instead of reading materialized Transform
output: decoded float images are an order of magnitude larger than the JPEGs
they came from.
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
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from fakeface import features, metrics, progress
from fakeface.components.trainer import inputs, optimization
from fakeface.components.trainer import model as model_lib
from fakeface.components.trainer import warmup
from fakeface.pipeline import config as config_lib
from fakeface.serving import client as serving_client


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
                image_size=config_lib.model_input_size(config["transform"]),
                trainable=bool(trainer_config["backbone_trainable"]),
                dropout=float(trainer_config["dropout"]),
                optimizer=optimization.make_optimizer(trainer_config, total_steps))
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


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


def make_repeatable(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow, and makes TensorFlow's ops deterministic.

    With the input in content-hash order (inputs.py), the same seed, examples
    and config then give the same model (docs/training.md says how far that
    holds).
    """
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def callbacks(fn_args: tfx.components.FnArgs, trainer_config: Dict[str, Any],
              history_csv: str) -> List[tf.keras.callbacks.Callback]:
    """TensorBoard logs, checkpoints to resume from, the per-epoch log and, if configured, early stopping."""
    checkpoints = checkpoint_dir(fn_args)
    tf.io.gfile.makedirs(os.path.dirname(checkpoints))
    chosen = [
        tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
        tf.keras.callbacks.BackupAndRestore(checkpoints, save_freq=int(trainer_config["checkpoint_every_steps"])),
        tf.keras.callbacks.CSVLogger(history_csv, append=True),
        tf.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress.epoch_ended(epoch + 1, int(trainer_config["epochs"]), logs)),
    ]
    if int(trainer_config["early_stopping_patience"]):
        chosen.append(tf.keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=int(trainer_config["early_stopping_patience"]),
            restore_best_weights=True))
    return chosen


def train(fn_args: tfx.components.FnArgs, splits: inputs.Splits, strategy: tf.distribute.Strategy,
          weights: Optional[Dict[int, float]]) -> Tuple[tf.keras.Model, tf.keras.callbacks.History]:
    """The model fitted on the training split and validated on the eval split, its curves in the run folder."""
    config = fn_args.custom_config
    trainer_config = config["trainer"]
    if len(splits.train_labels) < 2:
        raise ValueError(f"the training split of sources {trainer_config['train_sources'] or 'all'} "
                         f"holds only {splits.train_labels}: a detector needs real and fake images")
    steps_per_epoch = max(1, math.ceil(sum(splits.train_labels.values()) / int(trainer_config["batch_size"])))
    epochs = int(trainer_config["epochs"])
    logging.info("Training on %d replica(s), global batch %s", strategy.num_replicas_in_sync,
                 trainer_config["batch_size"])
    model = create_model(config, epochs * steps_per_epoch, strategy)
    model.summary(print_fn=logging.info)
    logging.info("Training examples by label: %s; class weights: %s", splits.train_labels, weights)
    # Beside the checkpoints, so that a resumed run's curves hold every epoch.
    history_csv = checkpoint_dir(fn_args) + "-history.csv"
    history = model.fit(splits.train(), validation_data=splits.evaluation(), epochs=epochs,
                        steps_per_epoch=steps_per_epoch, class_weight=weights, verbose=2,
                        callbacks=callbacks(fn_args, trainer_config, history_csv))
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    curves_csv = os.path.join(fn_args.model_run_dir, "training_curves.csv")
    write_curves(history_csv, curves_csv)
    tf.io.gfile.remove(history_csv)
    save_curves(curves_csv, os.path.join(fn_args.model_run_dir, "training_curves.png"))
    return model, history


def export(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput, threshold: float,
           serving_model_dir: str, model_side: int) -> str:
    """Saves the serving SavedModel with its signatures and warm-up requests of `model_side` px images;
    returns the model version it reports."""
    model_version = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    signatures = model_lib.serving_signatures(model, tf_transform_output, threshold, model_version)
    # Without the optimizer: serving and evaluation never need it, its slots
    # would double or triple the export, and its schedule is a fakeface class
    # that tf.keras.models.load_model could not rebuild where fakeface is not
    # imported. Resuming uses the checkpoints, not this export.
    model.save(serving_model_dir, save_format="tf", signatures=signatures, include_optimizer=False)
    model_lib.mark_classify_signature(serving_model_dir)
    warmup.write(serving_model_dir, model_side, serving_client.DEFAULT_BATCH_SIZE)
    return model_version


def write_record(fn_args: tfx.components.FnArgs, record: Dict[str, Any]) -> None:
    """training.json and the training curves' PNG into the model's assets.extra: they travel with the model."""
    extra_dir = os.path.join(fn_args.serving_model_dir, "assets.extra")
    tf.io.gfile.makedirs(extra_dir)
    with tf.io.gfile.GFile(os.path.join(extra_dir, "training.json"), "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
    curves_png = os.path.join(fn_args.model_run_dir, "training_curves.png")
    if tf.io.gfile.exists(curves_png):
        # For the evaluation report, which sees the model but not its run folder.
        tf.io.gfile.copy(curves_png, os.path.join(extra_dir, "training_curves.png"), overwrite=True)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train, choose the decision threshold, export, record."""
    config = fn_args.custom_config
    trainer_config = config["trainer"]
    make_repeatable(int(trainer_config["seed"]))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    splits = inputs.read_splits(fn_args.train_files, fn_args.eval_files, fn_args.data_accessor,
                                tf_transform_output, config)
    strategy = distribution_strategy(trainer_config["strategy"])
    weights = class_weights(splits.train_labels) if trainer_config["class_weights"] else None
    model, history = train(fn_args, splits, strategy, weights)
    # Scored per image as served, tiles averaged, not per tile as validated.
    decision = choose_threshold(model, splits.evaluation(per_image=True), config)
    model_version = export(model, tf_transform_output, decision["threshold"], fn_args.serving_model_dir,
                           config_lib.model_input_size(config["transform"]))
    write_record(fn_args, {
        "model_version": model_version, "config": config, "class_weights": weights, "decision": decision,
        "input": splits.summary(), "replicas": strategy.num_replicas_in_sync,
        "optimizer": optimization.optimizer_kind(trainer_config["optimizer"], trainer_config["backbone"]),
        "precision_policy": precision_policy(trainer_config["mixed_precision"]),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}})
