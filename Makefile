# `make run`: install into .venv (once) and run the embedded default grid.
# `make test`: install into .venv (once), build the docs with --strict (a broken link fails) and run the test suite.
# `make test-slow`: the heavier tests (marked slow: real backbones, whole CHASE_DB1 cells).
# `make test-slurm`: a tiny grid on a real one-node SLURM cluster on loopback (root; docs/running.md "Running on a SLURM cluster").
# `make docs`: build the documentation site (docs/, mkdocs.yml) into site/.
# `make gpu-check`: scripts/gpu_check.sh on CUDA: bench, two smoke cells and the paper grid's plan in one
#   report, results/gpu_check.md (docs/engine.md "A lean training step"; about 8 minutes on one H100).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.saltbench-installed
PIP := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: run test test-slow test-slurm docs install clean-results gpu-check

install: $(STAMP)

# torch first: segment-anything and sam2 build against it (no build isolation); sam2 without nvcc.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) setuptools==84.2.1 torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 1 --resources gpu=1 --rerun-incomplete

# no --quiet for mkdocs: it hides the warnings that --strict turns into a failure
test: $(STAMP)
	d=$$(mktemp -d); $(BIN)/mkdocs build --strict --site-dir $$d; rc=$$?; rm -rf $$d; exit $$rc
	HF_HUB_OFFLINE=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slow

# installs the SLURM executor plugin (the `slurm` extra), and Debian's slurm-wlm, slurmdbd, munge and
# mariadb-server when missing (tests/slurm/cluster.py); starts and stops the daemons itself
test-slurm: $(STAMP)
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation -e ".[test,slurm]"
	HF_HUB_OFFLINE=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slurm -s -v tests/slurm

gpu-check: $(STAMP)
	scripts/gpu_check.sh --device cuda --out results/gpu_check.md

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean-results:
	rm -rf results/cells results/datasets results/logs results/grids figures/table1.*
