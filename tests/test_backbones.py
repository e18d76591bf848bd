"""Xception built in-process, a BiT-shaped module through the real hub path, mixed precision."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fakeface.components.trainer import backbones, training
from fakeface.pipeline import config as config_lib
from fakeface.pipeline import pipeline

XCEPTION_SIDE = 71  # the smallest input Keras' Xception takes


def _custom_config(**trainer):
    config = config_lib.from_dict({"runs_root": "/tmp/unused", "trainer": trainer,
                                   "transform": {"image_size": trainer.pop("image_size", 32)}})
    return pipeline.trainer_custom_config(config)


@pytest.fixture(scope="module")
def xception_weights(tmp_path_factory):
    """A weights file saved from a randomly initialised Xception, as one staged from Keras' download."""
    path = str(tmp_path_factory.mktemp("weights") / "xception_notop.h5")
    tf.keras.utils.set_random_seed(1)
    base = backbones.build_xception("none", XCEPTION_SIDE)
    base.save_weights(path)
    return path, [w.numpy() for w in base.weights]


def test_xception_weights_load_from_a_file_path(xception_weights):
    path, saved = xception_weights
    custom = _custom_config(backbone="xception", backbone_handle=path, image_size=XCEPTION_SIDE)
    assert custom["backbone_handle"] == os.path.abspath(path)
    model = training.create_model(custom, total_steps=10, strategy=tf.distribute.get_strategy())
    loaded = model.get_layer("xception").weights
    assert len(loaded) == len(saved)
    for weight, expected in zip(loaded, saved):
        np.testing.assert_array_equal(weight.numpy(), expected)
    images = tf.random.uniform([2, XCEPTION_SIDE, XCEPTION_SIDE, 3])
    assert model(images).shape == (2, 1)


def test_named_xception_weights_are_not_taken_for_paths():
    assert _custom_config(backbone="xception", image_size=299)["backbone_handle"] == "imagenet"
    assert _custom_config(backbone="xception", backbone_handle="none", image_size=299)["backbone_handle"] == "none"


def test_fine_tuning_xception_keeps_batch_norm_statistics(xception_weights):
    """Unfrozen, every weight learns, yet the pre-trained moving statistics stay as they were."""
    path, _ = xception_weights
    custom = _custom_config(backbone="xception", backbone_handle=path, image_size=XCEPTION_SIDE,
                            backbone_trainable=True, learning_rate=0.01)
    model = training.create_model(custom, total_steps=10, strategy=tf.distribute.get_strategy())
    model.run_eagerly = True  # one step; tracing Xception's gradient graph would take 20 s
    base = model.get_layer("xception")
    batch_norms = [layer for layer in base.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert batch_norms and all(layer.trainable for layer in batch_norms)
    statistics = [w.numpy() for layer in batch_norms for w in (layer.moving_mean, layer.moving_variance)]
    kernels = [layer.kernel.numpy() for layer in base.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    images = np.random.default_rng(0).random((4, XCEPTION_SIDE, XCEPTION_SIDE, 3)).astype(np.float32)
    model.fit(images, np.array([[0], [1], [0], [1]], np.float32), epochs=1, verbose=0)
    after = [w.numpy() for layer in batch_norms for w in (layer.moving_mean, layer.moving_variance)]
    for before, now in zip(statistics, after):
        np.testing.assert_array_equal(before, now)
    new_kernels = [layer.kernel.numpy() for layer in base.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    assert any(not np.array_equal(a, b) for a, b in zip(kernels, new_kernels)), "the backbone learns"


def export_bit_shaped_module(path: str) -> str:
    """A SavedModel with BiT-M's interface: float32 [batch, h, w, 3] in [0, 1] of any size to [batch, 2048]."""
    images = tf.keras.Input(shape=(None, None, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu")(images)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    features = tf.keras.layers.Dense(2048)(x)
    tf.saved_model.save(tf.keras.Model(images, features), path)
    return path


def test_a_bit_shaped_module_trains_saves_and_reloads_through_the_bit_backbone(tmp_path):
    import tensorflow_hub as hub

    handle = export_bit_shaped_module(str(tmp_path / "bit-m-r50x1"))
    layer = hub.KerasLayer(handle)
    for size in (32, 57):
        assert layer(tf.zeros([3, size, size + 5, 3])).shape == (3, 2048)

    custom = _custom_config(backbone="bit-m-r50x1", backbone_handle=handle, image_size=32)
    assert custom["backbone_handle"] == handle
    model = training.create_model(custom, total_steps=10, strategy=tf.distribute.get_strategy())
    assert isinstance(model.optimizer, tf.keras.optimizers.SGD), "BiT fine-tunes with SGD"
    assert model.get_layer("backbone").trainable_weights
    images = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    backbone_before = [w.numpy() for w in model.get_layer("backbone").trainable_weights]
    model.fit(images, np.array([[0], [1], [0], [1]], np.float32), epochs=1, verbose=0)
    assert any(not np.array_equal(a, w.numpy())
               for a, w in zip(backbone_before, model.get_layer("backbone").trainable_weights))
    model.save(str(tmp_path / "model"), save_format="tf")
    reloaded = tf.keras.models.load_model(str(tmp_path / "model"))
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5)


@pytest.mark.slow
def test_mixed_precision_trains_a_step_on_two_replicas(tmp_path):
    """mixed_float16 under MirroredStrategy over two logical CPUs, as on a two-GPU node."""
    script = os.path.join(os.path.dirname(__file__), "scripts", "mixed_precision_step.py")
    result = subprocess.run([sys.executable, script, str(tmp_path), "xception", str(XCEPTION_SIDE)],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["replicas"] == 2
    assert run["backbone_compute_dtype"] == "float16"
    assert run["output_dtype"] == "float32" and run["loss_finite"], run


def test_hub_backbones_stay_float32_under_mixed_precision(tmp_path):
    """Hub modules are SavedModels traced in float32: their input must not be cast to float16."""
    custom = _custom_config(mixed_precision="on")
    custom["backbone_handle"] = backbones.export_small_cnn(str(tmp_path / "small-cnn"))
    model = training.create_model(custom, total_steps=10, strategy=tf.distribute.get_strategy())
    assert tf.keras.mixed_precision.global_policy().name == "float32", "the global policy is restored"
    assert model.get_layer("backbone").compute_dtype == "float32"
    assert model.get_layer("dropout").compute_dtype == "float16"
    images = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    history = model.fit(images, np.array([[0], [1], [0], [1]], np.float32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(images, verbose=0).dtype == np.float32
