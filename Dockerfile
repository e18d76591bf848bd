# The image of every pipeline step on Kubeflow but the Trainer (see Dockerfile.gpu).
#   docker build -t ghcr.io/YOUR_ORG/fakeface:0.1.0 .
# Needs BuildKit (docker build's default since Docker 23.0): the wheels stage is
# mounted into the lock install, not copied; where the mount is missing or empty,
# --only-binary=:all: fails the build instead of compiling.
# The compiled spec sets each container's command itself
# (python -m fakeface.pipeline.kfp_entrypoint), so the TFX image's ENTRYPOINT is
# kept as it is and not relied on.
# tensorflow/tfx:1.16.0, by TFX's build scripts (tfx/tools/docker/ at v1.16.0):
# tfx and tensorflow 2.16.2 pip-installed on a Deep Learning Containers tf2-gpu
# py310 image, so CPython 3.10 with a C++ compiler.
# Pinned by tag; production should pin by digest (tensorflow/tfx:1.16.0@sha256:...).

# Wheels for the lock's pins that PyPI has only as source ('make check-wheels' lists
# them and checks this stage), compiled on the same base and Python as the image.
FROM tensorflow/tfx:1.16.0 AS wheels
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The base has a C++ compiler (TFX's build compiled pyfarmhash in it); install one if not.
RUN command -v g++ >/dev/null || { apt-get update \
        && apt-get install -y --no-install-recommends build-essential \
        && rm -rf /var/lib/apt/lists/*; }
# The pins: pyfarmhash (C++) and four pure-Python packages published as sdists only.
# Built with the lock's setuptools and wheel, not an isolated build environment: nothing unpinned.
RUN python -m pip install --no-deps setuptools==80.9.0 wheel==0.45.1 \
    && python -m pip wheel --no-deps --no-build-isolation --no-binary :all: --wheel-dir /wheels \
        pyfarmhash==0.3.2 google-apitools==0.5.31 kfp==2.5.0 kfp-server-api==2.0.5 rouge-score==0.1.2

FROM tensorflow/tfx:1.16.0

# TFX 1.16 and tensorflow_hub need Keras 2: must be set before TensorFlow loads.
ENV TF_USE_LEGACY_KERAS=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/fakeface
# The lock first, so code edits do not re-install the dependencies. --no-deps:
# the lock is the whole environment and no resolver may change it.
# --only-binary=:all:: every pin comes as a wheel, from PyPI or from the wheels
# stage, so nothing compiles here and a missing wheel fails the build.
COPY requirements.lock ./
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m pip install --no-deps -r requirements.lock --only-binary=:all: --find-links /wheels

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
