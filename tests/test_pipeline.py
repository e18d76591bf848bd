"""create_pipeline(), the EvalConfig and the schema, built without running anything."""

import hashlib
import json
import os

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2
from google.protobuf import text_format

from fakeface import features, schemas
from fakeface.pipeline import config as config_lib
from fakeface.pipeline import evaluation, pipeline


@pytest.fixture
def config(tmp_path):
    return config_lib.from_dict({"runs_root": str(tmp_path / "runs")})


def _by_id(tfx_pipeline):
    return {component.id: component for component in tfx_pipeline.components}


def test_pipeline_wires_every_component(config):
    built = pipeline.create_pipeline(config)
    nodes = _by_id(built)
    assert set(nodes) == {
        "ImageExampleGen", "StatisticsGen", "CuratedSchemaGen", "ExampleValidator", "ServedStatistics",
        "DistributionValidator", "DataValidation", "Transform", "Trainer", "ServedModel", "Evaluator",
        "EvaluationReport", "Pusher"}
    assert nodes["Transform"].inputs["schema"].producer_component_id == "CuratedSchemaGen"
    assert nodes["StatisticsGen"].inputs["schema"].producer_component_id == "CuratedSchemaGen"
    assert nodes["ExampleValidator"].inputs["statistics"].producer_component_id == "StatisticsGen"
    assert nodes["DistributionValidator"].inputs["baseline_statistics"].producer_component_id == "ServedStatistics"
    assert nodes["DataValidation"].inputs["schema_anomalies"].producer_component_id == "ExampleValidator"
    assert nodes["DataValidation"].inputs["drift_anomalies"].producer_component_id == "DistributionValidator"
    # The gate: Transform, and so everything after it, runs only once the data passed.
    assert nodes["DataValidation"] in nodes["Transform"].upstream_nodes
    assert nodes["EvaluationReport"].inputs["validation"].producer_component_id == "DataValidation"
    assert nodes["Pusher"].inputs["statistics"].producer_component_id == "StatisticsGen"
    assert nodes["Trainer"].inputs["examples"].producer_component_id == "ImageExampleGen"
    assert nodes["Trainer"].inputs["transform_graph"].producer_component_id == "Transform"
    assert nodes["ServedModel"].inputs["candidate"].producer_component_id == "Trainer"
    assert nodes["Evaluator"].inputs["baseline_model"].producer_component_id == "ServedModel"
    assert nodes["Pusher"].inputs["model_blessing"].producer_component_id == "Evaluator"
    assert nodes["EvaluationReport"].inputs["evaluation"].producer_component_id == "Evaluator"
    assert nodes["EvaluationReport"].inputs["model"].producer_component_id == "Trainer"
    assert built.pipeline_info.pipeline_root == os.path.abspath(config.pipeline_root_path)
    assert built.beam_pipeline_args == config.beam_pipeline_args


def test_paths_and_settings_reach_the_components(config):
    nodes = _by_id(pipeline.create_pipeline(config))
    assert nodes["ImageExampleGen"].exec_properties["input_base"] == os.path.dirname(
        os.path.abspath(config.catalog_path))
    with open(schemas.SCHEMA_PATH, "rb") as f:
        assert nodes["CuratedSchemaGen"].exec_properties["schema_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert nodes["ServedModel"].exec_properties["serving_model_dir"] == os.path.abspath(
        config.serving_model_dir_path)
    custom = nodes["Trainer"].exec_properties["custom_config"]
    assert '"image_size": 64' in custom and config.local_hub_dir.split(os.sep)[-1] in custom
    assert os.path.abspath(config.serving_model_dir_path) in nodes["Pusher"].exec_properties["push_destination"]


def test_code_source_selects_module_files_or_import_paths(config):
    local = _by_id(pipeline.create_pipeline(config))
    assert local["Transform"].exec_properties["module_file"] == pipeline.TRANSFORM_MODULE_FILE
    assert local["Trainer"].exec_properties["module_file"] == pipeline.TRAINER_MODULE_FILE
    assert os.path.isfile(pipeline.TRANSFORM_MODULE_FILE) and os.path.isfile(pipeline.TRAINER_MODULE_FILE)

    config.code_source = "installed"
    installed = _by_id(pipeline.create_pipeline(config))
    assert installed["Transform"].exec_properties["preprocessing_fn"] == pipeline.PREPROCESSING_FN
    assert installed["Trainer"].exec_properties["run_fn"] == pipeline.RUN_FN
    assert not installed["Trainer"].exec_properties.get("module_file")


def test_validation_settings_reach_the_gate_and_the_drift_check(config):
    config.validation.fail_on = ["ERROR", "WARNING"]
    config.validation.drift_severity = "ERROR"
    config.validation.drift_thresholds = {"source": 0.25}
    nodes = _by_id(pipeline.create_pipeline(config))
    assert json.loads(nodes["DataValidation"].exec_properties["fail_on"]) == ["ERROR", "WARNING"]
    assert nodes["DataValidation"].exec_properties["drift_severity"] == "ERROR"
    drift = nodes["DistributionValidator"].exec_properties["distribution_validator_config"].default_slice_config.feature
    assert [(list(f.path.step), f.distribution_comparator.infinity_norm.threshold) for f in drift] == [(["source"], 0.25)]
    assert nodes["ServedStatistics"].exec_properties["serving_model_dir"] == os.path.abspath(
        config.serving_model_dir_path)

    config.validation.drift_thresholds = {}
    nodes = _by_id(pipeline.create_pipeline(config))
    assert "DistributionValidator" not in nodes and "ServedStatistics" not in nodes
    assert "drift_anomalies" not in nodes["DataValidation"].inputs


def test_baseline_none_blesses_without_the_served_model(config):
    config.evaluator.baseline = "none"
    nodes = _by_id(pipeline.create_pipeline(config))
    assert "ServedModel" not in nodes
    assert "baseline_model" not in nodes["Evaluator"].inputs


def test_named_functions_exist():
    from fakeface.components.trainer import training
    from fakeface.components.transform import preprocessing

    assert pipeline.PREPROCESSING_FN == f"{preprocessing.__name__}.{preprocessing.preprocessing_fn.__name__}"
    assert pipeline.RUN_FN == f"{training.__name__}.{training.run_fn.__name__}"


def _metric(eval_config, class_name):
    return next((spec, m) for spec in eval_config.metrics_specs for m in spec.metrics
                if m.class_name == class_name)


def test_eval_config_slices_by_every_slice_feature_and_blesses_on_overall_auc():
    eval_config = evaluation.build_eval_config(config_lib.EvaluatorConfig(min_auc=0.8, max_auc_drop=0.01))
    sliced = {tuple(spec.feature_keys) for spec in eval_config.slicing_specs}
    assert () in sliced
    assert {(name,) for name in features.SLICE_FEATURES} <= sliced
    assert {(features.IMAGE_FORMAT,), (features.RESOLUTION_BUCKET,)} <= sliced
    assert (features.SOURCE, features.SHOT) in sliced

    spec, auc = _metric(eval_config, "AUC")
    assert list(spec.output_names) == [features.FAKE_PROBABILITY]
    assert not auc.HasField("threshold")  # a plain threshold would apply to one-class slices too
    (per_slice,) = auc.per_slice_thresholds
    assert [tuple(s.feature_keys) for s in per_slice.slicing_specs] == [()]
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.8
    assert per_slice.threshold.change_threshold.absolute.value == -0.01
    assert dict(eval_config.model_specs[0].label_keys) == {
        features.FAKE_PROBABILITY: features.LABEL, features.DECISION_SCORE: features.LABEL}


def test_eval_config_limits_the_false_positive_rate_of_all_real_images_and_every_real_source():
    eval_config = evaluation.build_eval_config(config_lib.EvaluatorConfig(max_real_source_fpr=0.02,
                                                                          min_real_images=30))
    spec, checked = _metric(eval_config, "CheckedFallOut")
    # Thresholded metrics read the decision score at 0.5: the model's own threshold.
    assert list(spec.output_names) == [features.DECISION_SCORE]
    assert checked.module == evaluation.__name__
    assert json.loads(checked.config) == {"name": evaluation.CHECKED_FALSE_POSITIVE_RATE, "thresholds": [0.5],
                                          "min_real_images": 30}
    (per_slice,) = checked.per_slice_thresholds
    all_real, real_sources = per_slice.slicing_specs
    assert not all_real.feature_keys and dict(all_real.feature_values) == {features.LABEL: str(features.REAL)}
    assert list(real_sources.feature_keys) == [features.SOURCE]
    assert dict(real_sources.feature_values) == {features.LABEL: str(features.REAL)}
    assert all_real in eval_config.slicing_specs and real_sources in eval_config.slicing_specs
    assert per_slice.threshold.value_threshold.upper_bound.value == 0.02


@pytest.mark.parametrize("false_positives, real, minimum, expected", [
    (1, 4, 20, 0.0),  # one alarm among four images: not judged
    (1, 4, 4, 0.25),
    (3, 20, 20, 0.15),
    (0, 0, 1, 0.0),
])
def test_checked_false_positive_rate_needs_enough_real_images(false_positives, real, minimum, expected):
    from tensorflow_model_analysis.metrics import binary_confusion_matrices

    matrices = binary_confusion_matrices.Matrices(thresholds=[0.5], tp=[5.0], tn=[float(real - false_positives)],
                                                  fp=[float(false_positives)], fn=[0.0])
    metric = evaluation.CheckedFallOut(min_real_images=minimum)
    assert metric._metric_value(None, matrices, min_real_images=minimum) == pytest.approx(expected)


def test_eval_config_measures_what_the_report_promises():
    eval_config = evaluation.build_eval_config(config_lib.EvaluatorConfig())
    names = {json.loads(m.config)["name"] for spec in eval_config.metrics_specs for m in spec.metrics
             if m.config}
    assert names == {evaluation.EXAMPLE_COUNT, evaluation.MEAN_LABEL, evaluation.ACCURACY, evaluation.PRECISION, evaluation.RECALL,
                     evaluation.FALSE_POSITIVE_RATE, evaluation.CHECKED_FALSE_POSITIVE_RATE, evaluation.AUC, evaluation.AVERAGE_PRECISION,
                     evaluation.TPR_AT_1PCT_FPR, evaluation.CALIBRATION}


def test_checked_in_schema_is_generated_from_the_features_module():
    with open(schemas.SCHEMA_PATH, encoding="utf-8") as f:
        text = f.read()
    assert text == schemas.schema_text(), "run `fakeface schema --write`"
    schema = text_format.Parse(text, schema_pb2.Schema())
    assert [f.name for f in schema.feature] == list(features.RAW_FEATURES)
    label = next(f for f in schema.feature if f.name == features.LABEL)
    assert (label.int_domain.min, label.int_domain.max) == (features.REAL, features.FAKE)
