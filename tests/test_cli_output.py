"""What a user sees from the commands of a first hour: their answer on stdout, and on stderr nothing
that is not saltbench's own. Third-party noise (bitsandbytes' kernels message, peft's BOFT
extension warnings, timm's and fvcore's deprecations, a progress bar) is silenced by its exact text
(benchmark/quiet.py); these run the commands as a user does, in fresh processes, and read what
they print. In these runs saltbench itself has nothing to say on stderr, so it must stay empty."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_grid, write_grid

REPO = Path(__file__).resolve().parents[1]
LITE = {"lite": {"name": "litemedsam", "weights": "random"}}
# LoRA, and two peft tuners the docs do not list: BOFT is the one whose CUDA extension warns
FIELD = [{"id": "lora_r4", "name": "lora", "rank": 4},
         {"id": "hra_r4", "name": "peft", "tuner": "hra", "r": 4},
         {"id": "boft_b4", "name": "peft", "tuner": "boft", "boft_block_size": 4, "boft_block_num": 0}]


def saltbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)


def assert_quiet(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == []


def test_help_prints_only_the_help():
    run = saltbench("--help")
    assert_quiet(run)
    assert run.stdout.startswith("usage: saltbench")


@pytest.mark.parametrize("command", ["validate", "cells"])
def test_validate_and_cells_of_a_grid_with_peft_tuners_say_nothing_on_stderr(tmp_path, command):
    grid = write_grid(tmp_path, tiny_grid(tmp_path, backbones=LITE, methods=FIELD))
    run = saltbench(command, "--config", str(grid))
    assert_quiet(run)
    assert ("valid, 4 cells" in run.stdout) if command == "validate" else ("lite-boft_b4-bright-s0" in run.stdout)


def test_a_u_net_cell_says_nothing_on_stderr(tmp_path):
    grid = write_grid(tmp_path, tiny_grid(tmp_path))
    run = saltbench("cell", "--config", str(grid), "--cell", "unet_tiny-bright-s0")
    assert_quiet(run)
    assert run.stdout.splitlines()[-1].endswith("summary.json")


def test_the_text_encoder_loads_without_a_progress_bar_or_kernel_message():
    """all-MiniLM-L6-v2 comes through sentence-transformers, which imports peft and bitsandbytes."""
    run = subprocess.run([sys.executable, "-c", "from benchmark.models import text; print(text.encode_minilm('Vein').shape)"],
                         cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert_quiet(run)
    assert run.stdout.strip() == "torch.Size([384])"


@pytest.mark.slow  # a minute on 2 cores: LiteMedSAM at 256 px, its text encoder, GFLOPs counting
def test_a_litemedsam_cell_says_nothing_on_stderr(tmp_path):
    grid = tiny_grid(tmp_path, baselines=[], input_size=256, backbones={"lite": {"name": "litemedsam"}},
                     methods=[{"id": "lora_r4", "name": "lora", "rank": 4}])
    grid["train"]["epochs"] = 1
    grid["datasets"]["bright"].update(n_train=2, n_test=1)
    run = saltbench("cell", "--config", str(write_grid(tmp_path, grid)), "--cell", "lite-lora_r4-bright-s0")
    assert_quiet(run)
    assert run.stdout.splitlines()[-1].endswith("summary.json")
