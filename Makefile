# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build is a local file on the project's machines; override for CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo-out
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"  # ml, video and hpc extras + test tools
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m volumetric.demo $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .hypothesis
