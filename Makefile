# The two commands of the README:
#   make study   install (once) and run the default offline study end to end
#   make test    install (once) and run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= 2
# Jobs of both engines call the `peftlab` command: the venv's bin comes first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install study test lint

$(STAMP): requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/lock.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	snakemake --cores $(CORES)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(CORES) -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint
