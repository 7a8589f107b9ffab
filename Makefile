# Two entry points for a fresh machine: `make demo` (install + run the embedded digits job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test benchmark clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU build, so no dependency can pull a CUDA torch
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0 torchvision==0.28.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash workflow/scripts/demo.sh

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) results/quick .pytest_cache
