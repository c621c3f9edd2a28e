# Sluice developer entry points. `make help` lists them.
#
# Two Python environments, both built from nothing by this file:
#   .venv       the project (requirements/lock.txt + `sluice` editable), Python >= 3.12
#   .tools/sam  the AWS SAM CLI alone (requirements/sam-cli.txt): it pins older boto3 / click /
#               pydantic than the project, so it gets its own venv.
# The interpreter is found by scripts/find-python.sh (python3.12 on PATH, else pyenv's 3.12.x,
# else python3 if it is >= 3.12).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV       := .venv
TOOLS      := .tools
SAM_VENV   := $(TOOLS)/sam
LOCK       := requirements/lock.txt
SAM_LOCK   := requirements/sam-cli.txt
SAM_IN     := requirements/sam-cli.in
UV_VERSION := 0.13.9

VENV_STAMP := $(VENV)/.sluice-installed
SAM_STAMP  := $(SAM_VENV)/.sluice-installed
PY         := $(VENV)/bin/python
UV         := $(VENV)/bin/uv
SAM        := $(SAM_VENV)/bin/sam
FIND_PY    := scripts/find-python.sh

ENV        ?= dev
BUILD_DIR  ?= .aws-sam/build
PYTEST_ARGS ?=

# uv trusts the operating system's certificate store (as pip does through its config), so an
# HTTPS proxy's CA installed on the machine works without SSL_CERT_FILE in the environment.
export UV_SYSTEM_CERTS := 1

# The SAM CLI: no telemetry; the tests find the tool venv's binary through SLUICE_SAM.
export SAM_CLI_TELEMETRY := 0
export SLUICE_SAM := $(CURDIR)/$(SAM)

# Top-level packages of each dependency layer; `make layer-requirements` pins them (and what they
# pull in) to the versions in $(LOCK), for the Lambda platform. boto3 stays in the sluice pins (the
# version the tests run with), but layers/sluice/Makefile does not ship it, nor botocore, s3transfer,
# jmespath, urllib3, python-dateutil, six: the python3.12 runtime has them. Likewise the serving pins
# hold the whole closure, but layers/serving/Makefile leaves pydantic & co. to the sluice layer (same
# pins; the two layers always go together) and protobuf, flatbuffers, packaging out (only onnxruntime's
# tooling imports them). The ML layer has no onnxruntime: ONNX parity runs in the Verify function, on
# the serving layer.
LAYERS             := sluice serving ml
LAYER_PKGS_sluice  := boto3 pydantic pydantic-settings pyyaml aws-lambda-powertools aws-xray-sdk orjson
LAYER_PKGS_serving := fastapi mangum onnxruntime numpy
LAYER_PKGS_ml      := pandas scikit-learn scipy skl2onnx onnx numpy packaging xgboost-cpu onnxmltools
LAYER_PLATFORM     := x86_64-manylinux_2_28

.PHONY: help venv sam demo test lint format build sizes deploy bench lock layer-requirements clean distclean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-19s %s\n", $$1, $$2}'
	echo "  variables: ENV=dev|prod (deploy), BUILD_DIR, PYTEST_ARGS, SLUICE_SAM_BUILD_TEST=0 (skip the sam build test)"

# ------------------------------------------------------------------------------------------ envs
venv: $(VENV_STAMP) ## create/update .venv from requirements/lock.txt (skipped when unchanged)

$(VENV_STAMP): $(LOCK) pyproject.toml
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; raise SystemExit(sys.version_info[:2] < (3, 12))' 2>/dev/null; then
	  echo "==> $(VENV) is broken or older than Python 3.12: recreating it"
	  rm -rf $(VENV)
	fi
	if [ ! -x $(PY) ]; then
	  python=$$($(FIND_PY))
	  echo "==> creating $(VENV) with $$python"
	  "$$python" -m venv $(VENV)
	fi
	if [ "$$($(UV) --version 2>/dev/null | cut -d' ' -f2)" != "$(UV_VERSION)" ]; then
	  echo "==> installing uv==$(UV_VERSION) into $(VENV)"
	  $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	fi
	echo "==> installing $(LOCK) into $(VENV)"
	$(UV) pip install --python $(PY) -r $(LOCK)
	$(UV) pip install --python $(PY) --no-deps -e .
	touch $@

sam: $(SAM_STAMP) ## install the pinned AWS SAM CLI into its own tool venv .tools/sam

$(SAM_STAMP): $(SAM_LOCK) | $(VENV_STAMP)
	@if [ -x $(SAM_VENV)/bin/python ] && ! $(SAM_VENV)/bin/python -c 'import sys' 2>/dev/null; then
	  rm -rf $(SAM_VENV)
	fi
	if [ ! -x $(SAM_VENV)/bin/python ]; then
	  python=$$($(FIND_PY))
	  echo "==> creating $(SAM_VENV) with $$python"
	  "$$python" -m venv --without-pip $(SAM_VENV)
	fi
	echo "==> installing $(SAM_LOCK) into $(SAM_VENV)"
	$(UV) pip install --python $(SAM_VENV)/bin/python -r $(SAM_LOCK)
	$(SAM) --version
	touch $@

# ------------------------------------------------------------------------------------- use it
demo: venv ## run the local demo (embedded AWS, no account needed)
	@$(VENV)/bin/sluice demo

test: venv sam ## run the test suite (pytest); PYTEST_ARGS=... to pass arguments
	@rc=0; $(VENV)/bin/pytest $(PYTEST_ARGS) || rc=$$?
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): nothing failed"; rc=0; fi
	exit $$rc

lint: venv sam ## ruff check + format check, cfn-lint and sam validate --lint on template.yaml
	@echo "==> ruff check";         $(VENV)/bin/ruff check .
	echo "==> ruff format --check"; $(VENV)/bin/ruff format --check .
	echo "==> cfn-lint";            $(VENV)/bin/cfn-lint template.yaml
	echo "==> sam validate --lint"; $(SAM) validate --lint --template-file template.yaml

format: venv ## apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

build: sam ## sam build (python3.12 from PATH or pyenv; no Docker) into BUILD_DIR
	@bindir=$$($(FIND_PY) --bindir)
	echo "==> sam build with python3.12 from $$bindir"
	PATH="$$bindir:$$PATH" $(SAM) build --build-dir $(BUILD_DIR)
	$(MAKE) sizes || echo "WARNING: a function with its layers is over Lambda's 250 MB unzipped limit" >&2

sizes: venv ## unzipped size of each built function + its layers vs Lambda's 250 MB limit
	@$(PY) scripts/lambda_sizes.py $(BUILD_DIR)

deploy: ## sam deploy --config-env ENV (ENV=dev|prod; prod also needs CONFIRM=prod)
	@case "$(ENV)" in
	  dev) ;;
	  prod) if [ "$(CONFIRM)" != "prod" ]; then
	          echo "refusing to deploy prod without CONFIRM=prod (make deploy ENV=prod CONFIRM=prod)" >&2; exit 2
	        fi ;;
	  *) echo "ENV must be dev or prod (got '$(ENV)')" >&2; exit 2 ;;
	esac
	if [ -n "$${CI:-}" ] && [ -z "$${SLUICE_ALLOW_CI_DEPLOY:-}" ]; then
	  echo "refusing to deploy from CI (set SLUICE_ALLOW_CI_DEPLOY=1 to allow)" >&2; exit 2
	fi
	$(MAKE) build
	$(SAM) deploy --config-env $(ENV)

bench: venv ## run the benchmarks (python -m bench) if there are any
	@if [ -f bench/__main__.py ]; then
	  $(PY) -m bench
	else
	  echo "no benchmark yet (bench/__main__.py does not exist): nothing to run"
	fi

# ------------------------------------------------------------------------------------ locking
lock: venv ## re-lock requirements/lock.txt, the SAM CLI and the layer requirements (UPGRADE=1 to upgrade)
	@$(UV) pip compile pyproject.toml --extra dev --universal --python-version 3.12 -o $(LOCK) $(if $(UPGRADE),--upgrade)
	$(UV) pip compile $(SAM_IN) --universal --python-version 3.12 -o $(SAM_LOCK) $(if $(UPGRADE),--upgrade)
	$(MAKE) layer-requirements

define layer_requirements
{ echo "# Lambda layer '$(1)' (template.yaml), built by sam build for python3.12 x86_64."
  echo "# Generated by 'make layer-requirements' from $(LOCK): do not edit, edit the Makefile."
  echo "# Top level: $(LAYER_PKGS_$(1))"
  printf '%s\n' $(LAYER_PKGS_$(1)) | $(UV) pip compile - --constraint $(LOCK) --python-version 3.12 \
    --python-platform $(LAYER_PLATFORM) --no-header --no-annotate --quiet
} > layers/$(1)/requirements.txt.tmp
mv layers/$(1)/requirements.txt.tmp layers/$(1)/requirements.txt
echo "==> layers/$(1)/requirements.txt: $$(grep -c '==' layers/$(1)/requirements.txt) pins"
endef

layer-requirements: venv ## pin layers/*/requirements.txt to requirements/lock.txt
	@$(foreach l,$(LAYERS),$(call layer_requirements,$(l))
	)

# -------------------------------------------------------------------------------------- clean
clean: ## remove build output and caches (keeps .venv and .tools)
	@rm -rf .aws-sam build dist .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -path ./.tools -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean ## clean, and remove .venv and .tools too
	@rm -rf $(VENV) $(TOOLS)
