"""Tests of the pipeline configuration (pipeline/config.py)."""

import os

import pytest

from fakeface.pipeline import config

DERIVED_PATHS = ("catalog_path", "pipeline_root_path", "metadata_path_resolved", "serving_model_dir_path")


def _write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _is_under(path, folder):
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(folder)


def test_defaults_are_valid_and_keep_everything_under_runs_root():
    cfg = config.load()
    config.validate(cfg)
    for prop in DERIVED_PATHS:
        path = getattr(cfg, prop)
        assert path and _is_under(path, cfg.runs_root), (prop, path)


def test_derived_paths_follow_runs_root_and_pipeline_name(tmp_path):
    runs_root = str(tmp_path / "runs")
    a = config.load(overrides={"runs_root": runs_root, "pipeline_name": "a"})
    b = config.load(overrides={"runs_root": runs_root, "pipeline_name": "b"})
    for prop in DERIVED_PATHS:
        assert _is_under(getattr(a, prop), runs_root), prop
    # Two pipelines sharing a runs_root must not write over each other's artifacts.
    assert a.pipeline_root_path != b.pipeline_root_path
    assert a.serving_model_dir_path != b.serving_model_dir_path
    assert a.catalog_path == os.path.join(a.sample_data_dir, "catalog.yaml")


def test_explicit_paths_win_over_derived_ones(tmp_path):
    explicit = {
        "catalog": str(tmp_path / "data" / "catalog.yaml"),
        "pipeline_root": "gs://bucket/pipelines/fakeface",
        "metadata_path": str(tmp_path / "mlmd.sqlite"),
        "serving_model_dir": str(tmp_path / "export"),
    }
    cfg = config.load(overrides=dict(explicit, runs_root=str(tmp_path / "runs")))
    assert cfg.catalog_path == explicit["catalog"]
    assert cfg.pipeline_root_path == explicit["pipeline_root"]
    assert cfg.metadata_path_resolved == explicit["metadata_path"]
    assert cfg.serving_model_dir_path == explicit["serving_model_dir"]


def test_yaml_file_overrides_nested_keys_and_keeps_other_defaults(tmp_path):
    path = _write(tmp_path, (
        "runs_root: /data/fakeface_runs\n"
        "trainer:\n"
        "  epochs: 30\n"
        "  backbone: bit-m-r50x1\n"
        "evaluator:\n"
        "  min_auc: 0.95\n"))
    cfg = config.load(path)
    defaults = config.PipelineConfig()
    assert cfg.runs_root == "/data/fakeface_runs"
    assert (cfg.trainer.epochs, cfg.trainer.backbone) == (30, "bit-m-r50x1")
    assert cfg.evaluator.min_auc == 0.95
    assert cfg.trainer.batch_size == defaults.trainer.batch_size
    assert cfg.trainer.learning_rate == defaults.trainer.learning_rate
    assert cfg.evaluator.decision_threshold == defaults.evaluator.decision_threshold
    assert cfg.splits == defaults.splits
    assert cfg.transform == defaults.transform
    assert cfg.pipeline_name == defaults.pipeline_name
    assert cfg.beam_pipeline_args == defaults.beam_pipeline_args


def test_overrides_are_deep_merged_on_top_of_the_file(tmp_path):
    path = _write(tmp_path, (
        "pipeline_name: from-file\n"
        "trainer:\n"
        "  epochs: 30\n"
        "  batch_size: 8\n"))
    cfg = config.load(path, overrides={"trainer": {"epochs": 3}, "evaluator": {"min_auc": 0.9}})
    assert cfg.trainer.epochs == 3
    assert cfg.trainer.batch_size == 8
    assert cfg.pipeline_name == "from-file"
    assert cfg.evaluator.min_auc == 0.9
    assert cfg.evaluator.max_auc_drop == config.EvaluatorConfig().max_auc_drop


def test_int_is_accepted_where_a_float_is_expected(tmp_path):
    path = _write(tmp_path, "trainer:\n  learning_rate: 1\nevaluator:\n  min_auc: 1\n")
    cfg = config.load(path)
    assert cfg.trainer.learning_rate == 1.0 and isinstance(cfg.trainer.learning_rate, float)
    assert cfg.evaluator.min_auc == 1.0 and isinstance(cfg.evaluator.min_auc, float)


BAD_CONFIGS = [
    ("unknown_top_level_key", "runs_rot: /data\n", "runs_rot"),
    ("unknown_nested_key", "trainer:\n  epoch: 3\n", "epoch"),
    ("section_not_a_mapping", "trainer: 5\n", "trainer"),
    ("string_for_int", "trainer:\n  epochs: ten\n", "trainer.epochs"),
    ("float_for_int", "trainer:\n  epochs: 2.5\n", "trainer.epochs"),
    ("bool_for_int", "trainer:\n  epochs: true\n", "trainer.epochs"),
    ("bool_for_int_yaml11_yes", "trainer:\n  seed: yes\n", "trainer.seed"),
    ("bool_for_str_yaml11_on", "trainer:\n  mixed_precision: on\n", 'quote it, as in "on"'),
    ("string_for_float", "evaluator:\n  min_auc: high\n", "evaluator.min_auc"),
    ("int_for_bool", "enable_cache: 1\n", "enable_cache"),
    ("underscore_in_pipeline_name", "pipeline_name: fake_face\n", "pipeline_name"),
    ("uppercase_in_pipeline_name", "pipeline_name: FakeFace\n", "pipeline_name"),
    ("bad_code_source", "code_source: git\n", "code_source"),
    ("bad_baseline", "evaluator:\n  baseline: latest\n", "evaluator.baseline"),
    ("bad_backbone", "trainer:\n  backbone: resnet50\n", "trainer.backbone"),
    ("bad_optimizer", "trainer:\n  optimizer: rmsprop\n", "trainer.optimizer"),
    ("bad_strategy", "trainer:\n  strategy: tpu\n", "trainer.strategy"),
    ("bad_mixed_precision", "trainer:\n  mixed_precision: yes please\n", "trainer.mixed_precision"),
    ("bad_input_policy", "transform:\n  input_policy: pad\n", "transform.input_policy"),
    ("unknown_deeply_nested_key", "kubeflow:\n  beam_resources:\n    cpu: 2\n", "kubeflow.beam_resources.cpu"),
    ("bad_reencode_quality", "ingest:\n  reencode_jpeg_quality: 101\n", "ingest.reencode_jpeg_quality"),
    ("string_for_strip_metadata", "ingest:\n  strip_metadata: sometimes\n", "ingest.strip_metadata"),
    ("negative_near_duplicate_bits", "ingest:\n  near_duplicate_bits: -1\n", "ingest.near_duplicate_bits"),
    ("too_many_near_duplicate_bits", "ingest:\n  near_duplicate_bits: 9\n", "ingest.near_duplicate_bits"),
    ("chance_warning_accuracy", "ingest:\n  shortcut_warning_accuracy: 0.5\n", "ingest.shortcut_warning_accuracy"),
    ("warning_accuracy_above_one", "ingest:\n  shortcut_warning_accuracy: 1.2\n",
     "ingest.shortcut_warning_accuracy"),
    ("threshold_zero", "evaluator:\n  decision_threshold: 0\n", "evaluator.decision_threshold"),
    ("threshold_one", "evaluator:\n  decision_threshold: 1.0\n", "evaluator.decision_threshold"),
    ("threshold_negative", "evaluator:\n  decision_threshold: -0.2\n", "evaluator.decision_threshold"),
    ("threshold_above_one", "evaluator:\n  decision_threshold: 1.5\n", "evaluator.decision_threshold"),
    ("invalid_yaml", "trainer:\n  epochs: [3\n", "YAML"),
    ("unknown_severity", "validation:\n  fail_on: [FATAL]\n", "validation.fail_on"),
    ("unknown_drift_severity", "validation:\n  drift_severity: error\n", "validation.drift_severity"),
    ("drift_on_a_non_categorical_feature", "validation:\n  drift_thresholds: {width: 0.1}\n",
     "validation.drift_thresholds"),
    ("drift_threshold_above_one", "validation:\n  drift_thresholds: {source: 1.5}\n",
     "validation.drift_thresholds.source"),
    ("drift_threshold_not_a_number", "validation:\n  drift_thresholds: {label: high}\n",
     "validation.drift_thresholds.label"),
    ("drift_thresholds_not_a_mapping", "validation:\n  drift_thresholds: [source]\n",
     "validation.drift_thresholds"),
]


@pytest.mark.parametrize("text, key", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_file_and_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert message.startswith(path), message
    assert key in message, message


@pytest.mark.parametrize("knob, allowed", [
    ("code_source", config.CODE_SOURCES), ("evaluator.baseline", config.BASELINES),
    ("trainer.backbone", ("small-cnn", "bit-m-r50x1", "xception")), ("trainer.optimizer", config.OPTIMIZERS),
    ("trainer.strategy", config.STRATEGIES), ("trainer.mixed_precision", config.MIXED_PRECISION),
    ("transform.input_policy", config.INPUT_POLICIES),
])
def test_every_value_of_an_enumerated_knob_is_accepted_and_nothing_else(tmp_path, knob, allowed):
    def text(value):
        section, _, name = knob.rpartition(".")
        return f"{section}:\n  {name}: '{value}'\n" if section else f"{name}: '{value}'\n"

    for value in allowed:
        # xception needs a larger model input than the default.
        extra = "transform:\n  image_size: 96\n" if value == "xception" else ""
        config.load(_write(tmp_path, text(value) + extra, f"{value}.yaml"))
    path = _write(tmp_path, text("nonsense"), "bad.yaml")
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert str(e.value) == f"{path}: {knob}: must be one of {list(allowed)}, got 'nonsense'"


def test_train_sources_must_be_datasets_of_the_catalog(tmp_path):
    from fakeface import catalog, sample_data

    loaded = catalog.load(sample_data.generate(str(tmp_path / "data"), per_source=1, size=16))
    cfg = config.load(overrides={"trainer": {"train_sources": ["Gen1", "FFHQ_Orig"]}})
    config.check_train_sources(cfg, loaded, "c.yaml")
    cfg.trainer.train_sources.append("Gen3")
    with pytest.raises(config.ConfigError, match=r"^c.yaml: trainer.train_sources: \['Gen3'\] are not datasets"):
        config.check_train_sources(cfg, loaded, "c.yaml")
    cfg.trainer.train_sources[:] = ["Gen1", "Gen2"]
    with pytest.raises(config.ConfigError, match=r"^c.yaml: trainer.train_sources: .* are all fake; a detector"):
        config.check_train_sources(cfg, loaded, "c.yaml")


def test_missing_file_is_named(tmp_path):
    path = str(tmp_path / "missing.yaml")
    with pytest.raises(config.ConfigError, match="not found") as e:
        config.load(path)
    assert path in str(e.value)


def test_bad_override_is_refused_too(tmp_path):
    path = _write(tmp_path, "trainer:\n  epochs: 30\n")
    with pytest.raises(config.ConfigError, match=r"trainer\.epochs"):
        config.load(path, overrides={"trainer": {"epochs": "many"}})


@pytest.mark.parametrize("text", ["- trainer\n", "just some text\n", "5\n"])
def test_top_level_that_is_not_a_mapping_names_the_file(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert str(e.value).startswith(path)
