# Two commands do all the set-up on a fresh machine:
#   make example   build the bundled example dataset and run labellint on it
#   make test      run the test suite
# Both create .venv and install into it first (torch pinned to the local CPU wheel).

SHELL := bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check
# Some machines' pip configuration names index folders that do not exist; pip warns about each.
QUIET  := 2>&1 | sed '/^WARNING: Location .* is ignored/d'

.PHONY: install example test clean

$(STAMP): pyproject.toml constraints.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c constraints.txt torch $(QUIET)
	$(PIP) -c constraints.txt -e '.[dev]' $(QUIET)
	touch $@

install: $(STAMP)

example: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python examples/build_example.py examples/data
	$(BIN)/labellint check examples/data/sft --tokenizer examples/data/tokenizer || [ $$? -eq 1 ]

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) examples/data
