# Two entry points: `make demo` (the main job on the built-in models) and `make test`
# (pytest, then `make install-check`: the built wheel in a fresh venv, see scripts/check_install.sh).
# Each creates .venv with the CPU build of torch on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
DEMO_OUT ?= out/demo

.PHONY: setup demo test install-check bench clean

$(BIN)/insetgan: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .[test]
	@touch $@

setup: $(BIN)/insetgan

demo: setup
	$(BIN)/insetgan compose --face examples/selfie.jpg --outdir $(DEMO_OUT)
	@echo "result.png, compare.png, latents.npz and report.json written to $(DEMO_OUT)"

test: setup
	$(BIN)/python -m pytest -q tests
	$(MAKE) install-check

install-check: setup
	PYTHON=$(PYTHON) SHARED=$(SHARED) scripts/check_install.sh

bench: setup
	$(BIN)/python scripts/bench_generator.py
	$(BIN)/python scripts/bench_ops.py
	$(BIN)/python scripts/bench_compose.py

clean:
	rm -rf $(VENV) out build *.egg-info
