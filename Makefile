# The course's commands. Each sets up its own environment (.venv in the repository) first.
#   make course    build the website from lessons/ and serve it on http://127.0.0.1:8000
#   make site      build the website into site/ only
#   make test      package tests, then every notebook in quick mode (what CI runs)
#   make lab       open the lessons in JupyterLab
#   make gpu-wheels  download Jupyter as wheels for the GPU runbook (scripts/gpu_run.py) into .whl/

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned, so that pip takes the local CPU wheel and never pulls a
# multi-GB CUDA build on a CPU machine. Elsewhere override it: make test TORCH="torch>=2.4".
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q
export NO_MKDOCS_2_WARNING := 1

.PHONY: course site test test-packages test-notebooks lab clean gpu-wheels

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[site,test,kernels]"
	touch $@

course: $(VENV)/.installed
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

site: $(VENV)/.installed
	$(BIN)/mkdocs build --strict

test: $(VENV)/.installed
	$(BIN)/python scripts/run_tests.py

lab: $(VENV)/.installed
	$(PIP) -e ".[lab]"
	$(BIN)/jupyter lab lessons/

# The GPU machine has CPython 3.12 on x86-64 Linux and no network: fetch wheels built for it (pure
# Python ones, and binary ones for cp312 / abi3), dependencies included, from any machine with pip.
WHEELS := .whl
gpu-wheels:
	rm -rf $(WHEELS)
	$(PYTHON) -m pip download -q --disable-pip-version-check --only-binary=:all: -d $(WHEELS) \
		--python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -r scripts/gpu_wheels.txt
	@ls $(WHEELS) | wc -l | xargs echo "wheels in $(WHEELS):"

clean:
	rm -rf site .cache .pytest_cache
