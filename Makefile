# The two entry points of the README: `make site` (the full-size study: execute the notebooks whose inputs
# changed, render with Quarto when present; ARGS="--profile default" for the quick CPU check) and `make test`.
# Both create .venv and install the pinned dependencies first. Quarto is `quarto` on PATH or $(QUARTO).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

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
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) _site .quarto
