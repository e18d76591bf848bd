import os

# Before anything imports TensorFlow: TFX 1.16 needs Keras 2 (tf-keras).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory):
    """The whole pipeline run twice on 96 small images: (config, first, second).

    Shared by every test that needs a trained, pushed model, so the suite
    trains once. first/second are results.RunSummary of the two runs.
    """
    from fakeface import sample_data
    from fakeface.components.trainer import backbones
    from fakeface.pipeline import config as config_lib
    from fakeface.pipeline import local_runner, pipeline, results

    root = tmp_path_factory.mktemp("pipeline")
    catalog_path = sample_data.generate(str(root / "data"), per_source=12, size=32, seed=3)
    config = config_lib.from_dict({
        "runs_root": str(root / "runs"),
        "catalog": catalog_path,
        # A larger test share so that every source has test images.
        "splits": {"train": 40, "eval": 20, "test": 40},
        "transform": {"image_size": 32},
        # Blur+JPEG on half the images, so the shared run also proves that
        # training-only augmentation stays out of the served model.
        "trainer": {"epochs": 2, "batch_size": 8, "augment_blur_jpeg_probability": 0.5},
        # Two epochs on a few dozen images prove the plumbing, not accuracy.
        "evaluator": {"min_auc": 0.0, "max_auc_drop": 1.0, "max_real_source_fpr": 1.0},
    })
    backbones.ensure_local_backbone(config.trainer.backbone, pipeline.backbone_handle(config))
    first_id = local_runner.run(config)
    second_id = local_runner.run(config)
    # Each run read back by its own id, the first after the second was recorded.
    first = results.run_summary(config.metadata_path_resolved, config.pipeline_name, first_id)
    second = results.run_summary(config.metadata_path_resolved, config.pipeline_name, second_id)
    return config, first, second


@pytest.fixture(scope="session")
def build_transform_graph():
    """f(out_dir, transform_config, sample): preprocessing_fn through tf.Transform's Beam implementation.

    As the Transform component runs it; returns the TFTransformOutput.
    """
    def build(out_dir: str, transform_config, sample):
        import apache_beam as beam
        import tensorflow as tf
        import tensorflow_transform as tft
        import tensorflow_transform.beam as tft_beam
        from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

        from fakeface import features
        from fakeface.components.transform import preprocessing

        spec = {features.IMAGE_BYTES: tf.io.FixedLenFeature([], tf.string),
                features.LABEL: tf.io.FixedLenFeature([], tf.int64)}
        metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
        rows = [{features.IMAGE_BYTES: data, features.LABEL: i % 2} for i, data in enumerate(sample)]
        with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
            transform_fn = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(
                lambda inputs: preprocessing.preprocessing_fn(inputs, transform_config))
            _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(out_dir, "transform_graph"))
        metadata_io.write_metadata(metadata, os.path.join(out_dir, "transform_graph",
                                                          tft.TFTransformOutput.RAW_METADATA_DIR))
        return tft.TFTransformOutput(os.path.join(out_dir, "transform_graph"))

    return build
