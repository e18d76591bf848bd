import os

# Before anything imports TensorFlow: TFX 1.16 needs Keras 2 (tf-keras).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
