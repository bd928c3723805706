# The course's commands. Each sets up its own environment (.venv in the repository) first.
#   make course    build the website from lessons/ and serve it on http://127.0.0.1:8000
#   make site      build the website into site/ only
#   make test      package tests, then every notebook in quick mode (what CI runs)
#   make lab       open the lessons in JupyterLab

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned, so that pip takes the local CPU wheel and never pulls a
# multi-GB CUDA build on a CPU machine. Elsewhere override it: make test TORCH="torch>=2.4".
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q
export NO_MKDOCS_2_WARNING := 1

.PHONY: course site test test-packages test-notebooks lab clean

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

clean:
	rm -rf site .cache .pytest_cache
