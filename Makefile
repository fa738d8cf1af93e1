# The two commands of the README: `make run` and `make test`. Each sets itself up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/default.yaml
export ZENML_ANALYTICS_OPT_IN := false
export HF_HUB_OFFLINE := 1

.PHONY: install run test test-fast validate docs clean

# torch==2.13.0 goes in first, through pip: pip reads this machine's own config (its local CPU wheel);
# any other torch spec may pull a multi-GB CUDA build. The rest goes through uv, which installs the same
# pinned set in about a third of pip's time (docs/testing.md) and keeps the torch already installed.
# --compile-bytecode as pip does: with PYTHONDONTWRITEBYTECODE set, nothing else ever writes the .pyc
# files, and every process would compile every module it imports (twice the CPU of the whole suite).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0 uv
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Run the main job on the embedded default (local ZenML store + MLflow on SQLite under .sentibridge/).
run: install
	$(VENV)/bin/sentibridge train --config $(CONFIG)

## Check a dataset: make validate DATA=../shared/data/umsab
validate: install
	$(VENV)/bin/sentibridge validate --config $(CONFIG) $(if $(DATA),--data $(DATA))

## All tests: fast unit tests and the integration tests (real ZenML, MLflow and Gemma-3-270M), then the docs build.
# Two workers on two cores: a third one was slower (docs/testing.md has the measured run).
test: install
	$(VENV)/bin/pytest -q -n 2 --dist loadscope --no-loadscope-reorder
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

test-fast: install
	$(VENV)/bin/pytest -q -m "not integration"

## The docs: regenerate the benchmark tables from bench/results/*.json, then build the site into site/.
docs: install
	$(PY) -m bench.docs_tables
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf .sentibridge data/prepared
