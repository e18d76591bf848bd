# fakeface. The two commands a new user needs:
#   make run    set up .venv, draw the sample data, run the whole pipeline here
#   make test   set up .venv, run the test suite
# Everything is installed from requirements.lock without a resolver step, by uv
# (pinned below, bootstrapped with the venv's own pip): it unpacks and byte-compiles
# on every core, where pip takes twice as long on one. uv reads its own index
# settings (UV_DEFAULT_INDEX, UV_INDEX, UV_FIND_LINKS), not pip's configuration.
# fakeface_runs/ is the default config's runs_root (pipeline/config.py).

SHELL := /bin/bash
VENV ?= .venv
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
BIN := $(VENV)/bin
STAMP := $(VENV)/.fakeface-installed
INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --compile-bytecode

# TFX 1.16 and tensorflow_hub need Keras 2: must be set before TensorFlow loads.
export TF_USE_LEGACY_KERAS := 1
export PYTHON

.PHONY: venv run sample-data test clean check-wheels

venv: $(STAMP)

$(STAMP): requirements.lock setup.py
	@set -e; \
	if [ -x $(BIN)/python ] && $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then \
	  echo "Updating $(VENV)"; \
	else \
	  py="$$(tools/find-python310)"; \
	  rm -rf $(VENV); echo "Creating $(VENV) with $$py"; "$$py" -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install -qq --disable-pip-version-check --no-input uv==$(UV_VERSION)
	$(INSTALL) pip==$(PIP_VERSION) -r requirements.lock
	$(INSTALL) --no-build-isolation -e .
	@touch $@

sample-data: venv
	$(BIN)/fakeface sample-data fakeface_runs/sample_data

run: sample-data
	$(BIN)/fakeface run

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf fakeface_runs .pytest_cache

# Can both images install every pin of their locks? Asks PyPI for a wheel of each pin,
# else checks the Dockerfile's builder stage builds it (tools/check-wheels). Needs pip,
# not the venv (whose python it uses if there). Builds no image.
# CHECK_WHEELS_ARGS=--build-sdists also runs the builder stages' pip commands here
# (needs Python 3.10 and a C++ compiler).
check-wheels:
	@py="$$( [ -x $(BIN)/python ] && echo $(BIN)/python || command -v python3 )"; \
	echo "$$py tools/check-wheels $(CHECK_WHEELS_ARGS)"; \
	"$$py" tools/check-wheels $(CHECK_WHEELS_ARGS)
