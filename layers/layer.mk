# What the layers' `BuildMethod: makefile` builds share: layers/*/Makefile `include layer.mk`, a link
# to this file in each layer's folder (sam build copies only that folder, following links), as slim.py.

SHELL       := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:

PYTHON ?= python3.12
SITE   := $(ARTIFACTS_DIR)/python

# cp312 wheels for Lambda's x86_64 Amazon Linux 2023 (glibc 2.34); the requirements are resolved
# for manylinux_2_28 (LAYER_PLATFORM in the root Makefile). pip expands only the legacy
# manylinux2014 alias itself, so the manylinux_2_x tags are listed.
PLATFORMS := $(foreach v,28 27 26 25 24 23 22 21 20 19 18 17,manylinux_2_$(v)_x86_64) manylinux2014_x86_64
PIP_FLAGS := $(foreach p,$(PLATFORMS),--platform $(p)) --implementation cp --python-version 3.12 \
             --only-binary=:all: --no-deps --no-compile --quiet --disable-pip-version-check \
             --root-user-action=ignore

empty :=
space := $(empty) $(empty)
# $(call pins_re,NAME...): ^(name|name...)== with -, _ and . interchangeable (PEP 503 names)
pins_re = ^($(subst -,[-_.],$(subst $(space),|,$(strip $(1)))))==

# $(call install_pins,ELSEWHERE,LEFT_OUT): how a layer's recipe starts. SITE emptied; `tmp` a
# temporary directory, removed when the recipe ends; the pins of requirements.txt installed one by one
# (--no-deps) into SITE, except the packages ELSEWHERE (the runtime or another layer provides them:
# installed into $tmp/elsewhere, for slim.py's import check, never into the layer) and LEFT_OUT (not
# installed at all). Console scripts (bin/) are removed: nothing runs them in a layer.
define install_pins
@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (run through sam build)" >&2; exit 2; }
rm -rf "$(SITE)"
mkdir -p "$(SITE)"
tmp=$$(mktemp -d)
trap 'rm -rf "$$tmp"' EXIT
grep -viE '$(call pins_re,$(1) $(2))' requirements.txt > "$$tmp/layer.txt"
echo "==> $(@:build-%=%): $$(grep -c '==' "$$tmp/layer.txt") pinned packages$(if $(strip $(1) $(2)),\
  (without $(strip $(1) $(2))))"
$(PYTHON) -m pip install $(PIP_FLAGS) --target "$(SITE)" -r "$$tmp/layer.txt"
$(if $(strip $(1)),grep -iE '$(call pins_re,$(1))' requirements.txt > "$$tmp/elsewhere.txt")
$(if $(strip $(1)),$(PYTHON) -m pip install $(PIP_FLAGS) --target "$$tmp/elsewhere" -r "$$tmp/elsewhere.txt")
rm -rf "$(SITE)/bin"
endef
