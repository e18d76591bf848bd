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
