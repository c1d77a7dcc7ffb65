# Two commands for a fresh machine with Python 3.10+:
#   make demo   set up .venv, fine-tune on the demo data, register the model in ./mlflow.db
#   make test   set up .venv, run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines get the CPU build of torch first (an unpinned torch pulls CUDA wheels).
TORCH_CPU ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup browser demo test lint format clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q $(TORCH_CPU); fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed browser

# Debian's Chromium for the review page's browser test (tests/integration/
# test_serve_review_page.py; Playwright drives it, never downloading a browser of its own).
# Installed where this runs as root with apt; elsewhere that test says why it skips.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium (apt-get) for the browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
		(apt-get update -qq >/dev/null 2>&1 && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1) || \
		echo "chromium could not be installed: the browser test will skip"; \
	fi

demo: setup
	$(PY) jobs/finetune.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -ra --durations=15

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf runs mlruns mlartifacts mlflow.db .pytest_cache .mypy_cache .ruff_cache
