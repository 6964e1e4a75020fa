# Two commands on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: `torch==2.13.0` takes the CPU wheel on a CPU machine and the
# CUDA build on a GPU machine; a bare `torch` requirement would pull several GB of CUDA packages.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# pyright, the type checker of `make lint` and `make test` (see its rule below)
PYRIGHT_DIR   := .pyright
PYRIGHT_STAMP := $(PYRIGHT_DIR)/.installed-stamp
PYRIGHT_RUN   := $(PYRIGHT_DIR)/node_modules/.bin/pyright --pythonpath $(PY)

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint pyright install clean bench sandbox-deps test-sandbox test-deps test-llm

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
test: $(STAMP) $(PYRIGHT_STAMP) sandbox-deps test-deps
	$(VENV)/bin/ruff check .
	$(PYRIGHT_RUN)
	DISCO_DOCKER_HOST=$(DISCO_DOCKER_SOCK) $(PY) -m pytest -q

lint: $(STAMP) $(PYRIGHT_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PYRIGHT_RUN)

# The type checker alone (configured in pyproject.toml's [tool.pyright]), against the project's venv.
pyright: $(STAMP) $(PYRIGHT_STAMP)
	$(PYRIGHT_RUN)

# pyright from npm, pinned with its hash by requirements/pyright/package-lock.json (`npm ci` checks it), into
# .pyright/; node and npm are apt-installed when missing (needs root; Debian's node 18 is new enough).
$(PYRIGHT_STAMP): requirements/pyright/package.json requirements/pyright/package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	rm -rf $(PYRIGHT_DIR) && mkdir -p $(PYRIGHT_DIR)
	cp requirements/pyright/package.json requirements/pyright/package-lock.json $(PYRIGHT_DIR)/
	cd $(PYRIGHT_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(PYRIGHT_STAMP)

bench: $(STAMP)
	$(PY) evals/bench_zoo.py

clean:
	rm -rf $(VENV) $(LLM_VENV) $(PYRIGHT_DIR) .disco .pytest_cache .ruff_cache

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
# built from source (no binary wheels on PyPI; ~8 min on 2 cores) into its own environment, serving the GGUF
# of requirements/llm-model.txt on loopback. CI runs it after `make test`. Built for a portable x86-64 set
# (AVX2, no AVX-512 or AMX: GGML_NATIVE=OFF), and never from pip's wheel cache, whose key ignores CMAKE_ARGS:
# a native build on a host whose CPU lists AMX died of a general protection fault in libggml-cpu at its
# first completion, and a cached wheel would carry one host's build to another.
LLAMA_CPP_PYTHON := llama-cpp-python[server]==0.3.36
LLM_VENV  := .venv-llm
LLM_STAMP := $(LLM_VENV)/.installed-stamp

$(LLM_STAMP): requirements/llm-model.txt
	test -x $(LLM_VENV)/bin/python || $(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LLM_VENV)/bin/python -m pip install \
		--quiet --no-cache-dir --no-binary llama-cpp-python '$(LLAMA_CPP_PYTHON)'
	$(LLM_VENV)/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/llm-model.txt
	touch $(LLM_STAMP)

test-llm: $(STAMP) $(LLM_STAMP)
	DISCO_LLM_PYTHON=$(LLM_VENV)/bin/python $(PY) -m pytest -q -p no:cacheprovider tests_llm
