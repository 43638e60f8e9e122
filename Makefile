# Two commands do all the set-up on a fresh machine:
#   make example   build the bundled example dataset and run labellint on it
#   make test      run the test suite
# Both create .venv and install into it first (torch pinned to the local CPU wheel).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install example test clean

$(STAMP): pyproject.toml constraints.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt torch
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

example: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python examples/build_example.py examples/data
	$(BIN)/labellint check examples/data/sft --tokenizer examples/data/tokenizer || [ $$? -eq 1 ]

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) examples/data
