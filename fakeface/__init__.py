"""fakeface: a TFX pipeline that detects GAN-generated face images."""

import os

# TFX 1.16 and tensorflow_hub need Keras 2 (tf-keras); TensorFlow 2.16 picks
# Keras 3 unless this is set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
