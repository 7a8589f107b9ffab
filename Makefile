# Two entry points for a fresh machine: `make demo` (install + run the embedded digits job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-slurm schema benchmark clean

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

# The edit-run loop: everything but the slow end-to-end tests (Snakemake, subprocess runs, the wheel) and GPU tests.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu and not slurm"

# The Slurm profile against a real Slurm: a single-node one on loopback (needs root: it installs Debian's slurm-wlm and
# munge when missing), the test, then the daemons stopped again. Without root and without a running Slurm: skipped.
test-slurm: install
	@if [ "$$(id -u)" != 0 ] && ! sinfo >/dev/null 2>&1; then \
		echo "test-slurm: skipped (needs root to bring up a local Slurm, or a running Slurm)"; exit 0; fi; \
	started=0; if ! sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed'; then \
		bash workflow/scripts/local_slurm.sh; code=$$?; \
		if [ $$code = 3 ]; then echo "test-slurm: SKIPPED, no Slurm packages to install (see above)"; exit 0; fi; \
		if [ $$code != 0 ]; then exit 1; fi; started=1; fi; \
	PATH="$(abspath $(BIN)):$$PATH" IID_DISTILL_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q -m slurm tests/test_slurm.py; status=$$?; \
	if [ $$started = 1 ]; then bash workflow/scripts/local_slurm.sh stop; fi; exit $$status

# The params schema's generated blocks (each distillation setting's, from its declaration in iid_distill.distill.settings).
schema: install
	$(BIN)/python -m iid_distill.schema

clean:
	rm -rf $(VENV) results/quick .pytest_cache
