"""create_pipeline(): the one definition of the fakeface TFX pipeline.

ImageExampleGen -> CuratedSchemaGen -> StatisticsGen -> ExampleValidator
               -> ServedStatistics -> DistributionValidator -> DataValidation (the gate)
               -> Transform -> Trainer -> ServedModel -> Evaluator
               -> EvaluationReport, Pusher (only a blessed model)

Every runner (local, Kubeflow) builds its pipeline here; what differs between
them is the config and the metadata connection, never the graph.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional

import tensorflow_data_validation as tfdv
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from fakeface.components.curated_schema.component import CuratedSchemaGen
from fakeface.components.data_validation.component import DataValidation
from fakeface.components.distribution_validator.component import SPLIT_PAIRS, DistributionValidator, drift_config
from fakeface.components.evaluation_report.component import EvaluationReport
from fakeface.components.evaluator.component import Evaluator
from fakeface.components.image_example_gen.component import ImageExampleGen
from fakeface.components.pusher.component import Pusher
from fakeface.components.served_model.component import ServedModel
from fakeface.components.served_statistics.component import ServedStatistics
from fakeface.components.trainer import backbones
from fakeface.pipeline import config as config_lib
from fakeface.pipeline import evaluation

_COMPONENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "components")
# The module files TFX packages with the run (code_source "module_file"): every
# .py file in their folder is hashed into the cache key of Transform/Trainer.
TRANSFORM_MODULE_FILE = os.path.join(_COMPONENTS_DIR, "transform", "preprocessing.py")
TRAINER_MODULE_FILE = os.path.join(_COMPONENTS_DIR, "trainer", "training.py")
# The same functions by import path (code_source "installed"), for images that
# have the fakeface package installed, such as the Kubeflow container.
PREPROCESSING_FN = "fakeface.components.transform.preprocessing.preprocessing_fn"
RUN_FN = "fakeface.components.trainer.training.run_fn"


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def backbone_handle(config: config_lib.PipelineConfig) -> str:
    handle = backbones.resolve_handle(config.trainer.backbone, config.trainer.backbone_handle,
                                      config.local_hub_dir)
    return handle if handle in backbones.NAMED_WEIGHTS else _absolute(handle)


def ensure_local_backbone(config: config_lib.PipelineConfig) -> bool:
    """Builds the locally built backbone the config names, unless it exists; True if built now."""
    return backbones.ensure_local_backbone(config.trainer.backbone, backbone_handle(config),
                                           seed=config.trainer.seed)


def trainer_custom_config(config: config_lib.PipelineConfig) -> Dict[str, Any]:
    """What run_fn receives as custom_config (components/trainer/training.py)."""
    return {
        "trainer": dataclasses.asdict(config.trainer),
        "transform": dataclasses.asdict(config.transform),
        "backbone_handle": backbone_handle(config),
        "decision_threshold": config.evaluator.decision_threshold,
        "calibrate_threshold": config.evaluator.calibrate_threshold,
        "target_fpr": config.evaluator.target_fpr,
    }


def create_pipeline(
    config: config_lib.PipelineConfig,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
) -> tfx.dsl.Pipeline:
    example_gen = ImageExampleGen(
        catalog_path=_absolute(config.catalog_path),
        split_buckets={"train": config.splits.train, "eval": config.splits.eval,
                       "test": config.splits.test},
        ingest_options=dataclasses.asdict(config.ingest))

    schema_gen = CuratedSchemaGen()
    # With the schema, categorical integers (the label) get value counts, which drift is measured on.
    # Top values and distinct counts from sketches: TFDV's exact default keeps every distinct value,
    # and each image's hashes and path are distinct, so its memory grows with the data. The sketches
    # count exactly up to 1,024 distinct values (every slice feature has fewer) and estimate distinct
    # counts above 16,384.
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        stats_options=tfdv.StatsOptions(use_sketch_based_topk_uniques=True))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    serving_model_dir = _absolute(config.serving_model_dir_path)
    drift_nodes, drift_input = [], None
    if config.validation.drift_thresholds:
        served_statistics = ServedStatistics(
            statistics=statistics_gen.outputs["statistics"], serving_model_dir=serving_model_dir)
        distribution_validator = DistributionValidator(
            statistics=statistics_gen.outputs["statistics"],
            baseline_statistics=served_statistics.outputs["served_statistics"],
            config=drift_config(config.validation.drift_thresholds), include_split_pairs=SPLIT_PAIRS)
        drift_nodes = [served_statistics, distribution_validator]
        drift_input = distribution_validator.outputs["anomalies"]
    data_validation = DataValidation(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        schema_anomalies=example_validator.outputs["anomalies"], drift_anomalies=drift_input,
        fail_on=config.validation.fail_on, drift_severity=config.validation.drift_severity)

    transform_config = dataclasses.asdict(config.transform)
    trainer_config = trainer_custom_config(config)
    if config.code_source == "module_file":
        transform_code = {"module_file": TRANSFORM_MODULE_FILE}
        trainer_code = {"module_file": TRAINER_MODULE_FILE}
    else:
        transform_code = {"preprocessing_fn": PREPROCESSING_FN}
        trainer_code = {"run_fn": RUN_FN}

    # Not materialized: decoded float images would be many times the size of
    # the encoded files. The Trainer applies the transform graph itself.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        materialize=False,
        disable_statistics=True,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=[]),
        custom_config=transform_config,
        **transform_code)
    # The gate: blocking anomalies stop the run here, on every runner.
    transform.add_upstream_node(data_validation)

    trainer = tfx.components.Trainer(
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=trainer_config,
        **trainer_code)

    baseline_nodes, baseline_input = [], {}
    if config.evaluator.baseline == "served":
        served_model = ServedModel(candidate=trainer.outputs["model"], serving_model_dir=serving_model_dir)
        baseline_nodes = [served_model]
        baseline_input = {"baseline_model": served_model.outputs["served"]}

    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        **baseline_input,
        example_splits=["test"],
        eval_config=evaluation.build_eval_config(config.evaluator))

    report = EvaluationReport(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        validation=data_validation.outputs["validation"],
        evaluator_config=dataclasses.asdict(config.evaluator),
        serving_model_dir=serving_model_dir)

    # A condition, not only the Pusher's own check, so that Kubeflow shows an
    # unblessed run's Pusher as skipped rather than as having run.
    with tfx.dsl.Cond(evaluator.outputs["blessing"].future()[0].custom_property("blessed") == 1):
        pusher = Pusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            statistics=statistics_gen.outputs["statistics"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=_absolute(config.pipeline_root_path),
        components=[example_gen, schema_gen, statistics_gen, example_validator, *drift_nodes, data_validation,
                    transform, trainer, *baseline_nodes, evaluator, report, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args))
