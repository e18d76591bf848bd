"""fakeface: a TFX pipeline that detects GAN-generated face images."""

import os

# TFX 1.16 and tensorflow_hub need Keras 2 (tf-keras); TensorFlow 2.16 picks
# Keras 3 unless this is set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"


def __getattr__(name: str):
    # On Kubeflow, TFX's entrypoint imports a custom artifact type by its type
    # name, which KFP allows two parts only: "fakeface.EvaluationReport".
    if name == "EvaluationReport":
        from fakeface.components.evaluation_report.component import EvaluationReportArtifact

        return EvaluationReportArtifact
    raise AttributeError(f"module 'fakeface' has no attribute {name!r}")
