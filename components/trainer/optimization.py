"""Optimisers and learning-rate schedules of the founding notes.

ResNet50 (BiT) was fine-tuned with SGD, 3e-3 down to 3e-7; BiT's HyperRule
adds momentum 0.9, a linear warm-up, and steps of the rate at 30%, 60% and 90%
of the run. Xception was trained with Adam, 1e-2 down to 1e-4. The knobs are
in pipeline/config.py (trainer.optimizer, learning_rate*, decay_boundaries,
warmup_steps).

The schedules are LearningRateSchedule classes registered with Keras and
serializable through get_config: they are part of the optimizer that
BackupAndRestore checkpoints and that the saved model's training config names.
"""

from __future__ import annotations

from typing import Any, Dict, List

import tensorflow as tf

# BiT's HyperRule; the notes give no other.
SGD_MOMENTUM = 0.9


def optimizer_kind(optimizer: str, backbone: str) -> str:
    """"sgd" or "adam" for trainer.optimizer, resolving "auto" by backbone."""
    if optimizer != "auto":
        return optimizer
    return "sgd" if backbone.startswith("bit-") else "adam"


def scaled_learning_rate(trainer_config: Dict[str, Any], rate: float) -> float:
    """The linear scaling rule: configured rates are for learning_rate_batch_size."""
    return float(rate) * int(trainer_config["batch_size"]) / int(trainer_config["learning_rate_batch_size"])


def _warmup_factor(step: tf.Tensor, warmup_steps: int) -> tf.Tensor:
    # (step + 1): the first update already moves the weights; a rate of 0 would waste it.
    if not warmup_steps:
        return tf.constant(1.0)
    return tf.minimum(1.0, (step + 1.0) / float(warmup_steps))


@tf.keras.utils.register_keras_serializable(package="fakeface")
class WarmupStepDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `initial`, then equal steps down to `final` at `boundaries`.

    Step s (counted from 0) gets initial * (s + 1) / warmup_steps while
    s < warmup_steps; from each boundary step on, the rate is divided by
    (initial / final) ** (1 / len(boundaries)), so it is `final` after the last.
    """

    def __init__(self, initial: float, final: float, warmup_steps: int, boundaries: List[int]):
        super().__init__()
        self.initial = float(initial)
        self.final = float(final)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.initial)
        if self.boundaries:
            factor = (self.final / self.initial) ** (1.0 / len(self.boundaries))
            passed = tf.reduce_sum(tf.cast(step >= tf.constant(self.boundaries, tf.float32), tf.float32))
            rate = rate * tf.pow(factor, passed)
        return rate * _warmup_factor(step, self.warmup_steps)

    def get_config(self) -> Dict[str, Any]:
        return {"initial": self.initial, "final": self.final, "warmup_steps": self.warmup_steps,
                "boundaries": list(self.boundaries)}


@tf.keras.utils.register_keras_serializable(package="fakeface")
class WarmupExponentialDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `initial`, then exponential decay reaching `final` at the last step."""

    def __init__(self, initial: float, final: float, warmup_steps: int, total_steps: int):
        super().__init__()
        self.initial = float(initial)
        self.final = float(final)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decay_steps = float(max(1, self.total_steps - 1 - self.warmup_steps))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        rate = self.initial * tf.pow(self.final / self.initial, progress)
        return rate * _warmup_factor(step, self.warmup_steps)

    def get_config(self) -> Dict[str, Any]:
        return {"initial": self.initial, "final": self.final, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


def learning_rate_schedule(trainer_config: Dict[str, Any], total_steps: int
                           ) -> tf.keras.optimizers.schedules.LearningRateSchedule:
    """The schedule of the configured optimizer over a run of `total_steps` steps."""
    initial = scaled_learning_rate(trainer_config, trainer_config["learning_rate"])
    final = scaled_learning_rate(trainer_config, trainer_config["learning_rate_final"] or
                                 trainer_config["learning_rate"])
    warmup_steps = int(trainer_config["warmup_steps"])
    if optimizer_kind(trainer_config["optimizer"], trainer_config["backbone"]) == "sgd":
        # Boundaries that round to the same step would be one bigger step.
        boundaries = sorted({max(1, round(f * total_steps)) for f in trainer_config["decay_boundaries"]})
        return WarmupStepDecay(initial, final, warmup_steps, boundaries)
    return WarmupExponentialDecay(initial, final, warmup_steps, total_steps)


def make_optimizer(trainer_config: Dict[str, Any], total_steps: int) -> tf.keras.optimizers.Optimizer:
    """The optimizer trainer_config names, with its schedule; build it in the strategy's scope."""
    schedule = learning_rate_schedule(trainer_config, total_steps)
    if optimizer_kind(trainer_config["optimizer"], trainer_config["backbone"]) == "sgd":
        return tf.keras.optimizers.SGD(learning_rate=schedule, momentum=SGD_MOMENTUM)
    return tf.keras.optimizers.Adam(learning_rate=schedule)
