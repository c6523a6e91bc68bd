# Two set-up commands: `make run` and `make test`. Both build .venv from nothing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
CHECKOV_VENV := $(VENV)/tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: run test lint bench clean chromium lambda-artifacts sagemaker-containers test-unit checkov

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.2"

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP) $@

# checkov (tests/infra/test_checkov.py runs it on the CloudFormation templates) pins versions below
# this venv's (requirements-checkov.txt says which), so it gets a venv of its own inside .venv.
$(CHECKOV_STAMP): requirements-checkov.txt | $(PY)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade "pip<26.2"
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

checkov: $(CHECKOV_STAMP)

# Built once into ~/.cache/stepml (or $$STEPML_CACHE_DIR), the only steps that need a package
# index, so `run` and `test` are offline after them: the handlers' dependencies layer
# (Powertools, for Lambda's platform; prints the sizes) and the local cloud's python3.11 Lambda
# runtime (the SDK version AWS's runtime has, and awslambdaric).
lambda-artifacts: | $(PY)
	$(PY) -m infra_scripts.packaging
	$(PY) -m infra_scripts.localcloud.awslambda.runtime_env

# The SageMaker PyTorch container image local jobs and endpoints run in: AWS's toolkits
# (sagemaker-training, sagemaker-pytorch-training, sagemaker-inference, sagemaker-pytorch-inference)
# from PyPI, with this venv's torch linked in.
sagemaker-containers: | $(PY)
	$(PY) -m infra_scripts.localcloud.sagemaker.containers

run: $(STAMP) lambda-artifacts sagemaker-containers
	$(VENV)/bin/stepml run

# The browser test drives Debian's chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "warning: could not install chromium; the browser test will be skipped"

test: $(DEV_STAMP) $(CHECKOV_STAMP) chromium lambda-artifacts sagemaker-containers
	$(PY) -m pytest

# The fast inner loop: the unit tier only (markers: unit, localcloud, e2e, browser).
test-unit: $(DEV_STAMP) $(CHECKOV_STAMP) lambda-artifacts
	$(PY) -m pytest -m unit

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

bench: $(DEV_STAMP) lambda-artifacts sagemaker-containers
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV)
