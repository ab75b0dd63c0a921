# The two entry points of the README: `make site` (the full-size study: execute the notebooks whose inputs
# changed, render with Quarto when present; ARGS="--profile default" for the quick CPU check) and `make test`.
# Both create .venv and install the pinned dependencies first. Quarto is `quarto` on PATH or $(QUARTO).
# `make test` splits the suite over the cores (pytest-xdist: one worker a core, at most 4; the site tests, which
# render into the repository, share one worker); TEST_WORKERS=0 runs it in one process.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_WORKERS ?= auto

.PHONY: site test venv clean

ifdef QUARTO
export QUARTO
endif

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

site: $(STAMP)
	$(PY) -m paper build $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadgroup $(ARGS)

clean:
	rm -rf $(VENV) _site .quarto
