# The image of every pipeline step on Kubeflow but the Trainer (see Dockerfile.gpu).
#   docker build -t ghcr.io/YOUR_ORG/fakeface:0.1.0 .
# The compiled spec sets each container's command itself
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor),
# so the TFX image's ENTRYPOINT is kept as it is and not relied on.
# Pinned by tag; production should pin by digest (tensorflow/tfx:1.16.0@sha256:...).
FROM tensorflow/tfx:1.16.0

# TFX 1.16 and tensorflow_hub need Keras 2: must be set before TensorFlow loads.
ENV TF_USE_LEGACY_KERAS=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/fakeface
# The lock first, so code edits do not re-install the dependencies. --no-deps:
# the lock is the whole environment and no resolver may change it.
COPY requirements.lock ./
RUN python -m pip install --no-deps -r requirements.lock

COPY setup.py ./
COPY fakeface ./fakeface
COPY pipeline ./pipeline
COPY components ./components
COPY serving ./serving
COPY schemas ./schemas
# Not editable: the image holds the code it was built from.
RUN python -m pip install --no-deps --no-build-isolation . \
    && python -c "import fakeface.components.trainer.training, fakeface.components.transform.preprocessing"

# An unprivileged user; TFX's executor needs no root, only a writable home and
# working directory for Beam's and TensorFlow's temporary files.
RUN useradd --create-home --uid 10001 fakeface
USER 10001
WORKDIR /home/fakeface
