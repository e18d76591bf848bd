"""The notes' optimisers and learning-rate schedules (components/trainer/optimization.py)."""

import numpy as np
import pytest
import tensorflow as tf

from fakeface.components.trainer import optimization
from fakeface.pipeline import config as config_lib


def _trainer(**overrides):
    data = {"trainer": overrides, "transform": {"image_size": 299}}  # xception's minimum is 71
    return config_lib.to_dict(config_lib.from_dict(data))["trainer"]


def _rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_sgd_warms_up_then_steps_down_at_the_boundaries_to_the_final_rate():
    """BiT's HyperRule with the notes' range: 3e-3 at batch 512 down to 3e-7."""
    trainer = _trainer(optimizer="sgd", learning_rate=0.003, learning_rate_final=3e-7,
                       learning_rate_batch_size=512, batch_size=512, warmup_steps=10,
                       decay_boundaries=[0.3, 0.6, 0.9])
    schedule = optimization.learning_rate_schedule(trainer, total_steps=100)
    step_factor = (3e-7 / 0.003) ** (1 / 3)
    expected = {0: 0.003 / 10, 4: 0.003 * 5 / 10, 9: 0.003, 29: 0.003,
                30: 0.003 * step_factor, 59: 0.003 * step_factor,
                60: 0.003 * step_factor ** 2, 89: 0.003 * step_factor ** 2,
                90: 3e-7, 99: 3e-7, 150: 3e-7}
    np.testing.assert_allclose(_rates(schedule, expected), list(expected.values()), rtol=1e-4)


def test_bit_ten_fold_steps_come_from_a_final_rate_a_thousandth_of_the_start():
    trainer = _trainer(optimizer="sgd", learning_rate=0.003, learning_rate_final=3e-6)
    schedule = optimization.learning_rate_schedule(trainer, total_steps=1000)
    np.testing.assert_allclose(_rates(schedule, [299, 300, 600, 900]), [0.003, 3e-4, 3e-5, 3e-6], rtol=1e-4)


def test_adam_decays_exponentially_from_the_start_to_the_final_rate():
    """The notes' Xception: 1e-2 down to 1e-4."""
    trainer = _trainer(optimizer="adam", learning_rate=0.01, learning_rate_final=1e-4,
                       learning_rate_batch_size=16, batch_size=16, warmup_steps=5)
    schedule = optimization.learning_rate_schedule(trainer, total_steps=106)
    rates = _rates(schedule, range(106))
    np.testing.assert_allclose(rates[[0, 4, 5]], [0.01 / 5, 0.01, 0.01], rtol=1e-4)
    np.testing.assert_allclose(rates[[55, 105]], [1e-3, 1e-4], rtol=1e-4)
    assert np.all(np.diff(rates[5:]) < 0)


def test_rates_scale_linearly_with_the_global_batch():
    trainer = _trainer(optimizer="sgd", learning_rate=0.003, learning_rate_final=3e-7,
                       learning_rate_batch_size=512, batch_size=128)
    schedule = optimization.learning_rate_schedule(trainer, total_steps=100)
    np.testing.assert_allclose(_rates(schedule, [0, 99]), [0.00075, 0.75e-7], rtol=1e-4)


def test_the_default_keeps_the_small_cnn_on_adam_at_a_constant_rate():
    trainer = _trainer()
    assert isinstance(optimization.make_optimizer(trainer, total_steps=300), tf.keras.optimizers.Adam)
    schedule = optimization.learning_rate_schedule(trainer, total_steps=300)
    np.testing.assert_allclose(_rates(schedule, [0, 150, 299]), [0.002] * 3, rtol=1e-6)


@pytest.mark.parametrize("backbone, optimizer, expected", [
    ("bit-m-r50x1", "auto", tf.keras.optimizers.SGD),
    ("xception", "auto", tf.keras.optimizers.Adam),
    ("small-cnn", "auto", tf.keras.optimizers.Adam),
    ("small-cnn", "sgd", tf.keras.optimizers.SGD),
    ("bit-m-r50x1", "adam", tf.keras.optimizers.Adam),
])
def test_auto_picks_sgd_for_bit_and_adam_for_the_others(backbone, optimizer, expected):
    made = optimization.make_optimizer(_trainer(backbone=backbone, optimizer=optimizer), total_steps=10)
    assert type(made) is expected
    if expected is tf.keras.optimizers.SGD:
        assert made.momentum == pytest.approx(0.9)


@pytest.mark.parametrize("schedule", [
    optimization.WarmupStepDecay(0.003, 3e-7, 5, [3, 6, 9]),
    optimization.WarmupExponentialDecay(0.01, 1e-4, 2, 20),
])
def test_schedules_serialize_with_their_optimizer(schedule):
    """Keras rebuilds the optimizer, schedule included, from its config (saved models, checkpoints)."""
    optimizer = tf.keras.optimizers.SGD(learning_rate=schedule)
    rebuilt = tf.keras.optimizers.deserialize(tf.keras.optimizers.serialize(optimizer))
    rebuilt_schedule = tf.keras.optimizers.schedules.deserialize(rebuilt.get_config()["learning_rate"])
    assert type(rebuilt_schedule) is type(schedule)
    np.testing.assert_allclose(_rates(rebuilt_schedule, range(25)), _rates(schedule, range(25)))


@pytest.mark.parametrize("trainer, message", [
    ({"optimizer": "rmsprop"}, "trainer.optimizer"),
    ({"learning_rate_final": 0.01}, "learning_rate_final"),
    ({"decay_boundaries": [0.6, 0.3]}, "decay_boundaries"),
    ({"decay_boundaries": [0.3, 1.0]}, "decay_boundaries"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"mixed_precision": "yes"}, "mixed_precision"),
])
def test_bad_optimisation_settings_are_refused_by_name(trainer, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.from_dict({"trainer": trainer})
