"""The GPU allocator on simulated devices (no CUDA needed): concurrent claimers get distinct GPUs, a
SIGKILLed claimer's GPU is free again, slots spread cells over GPUs first, busy GPUs are refused
with a message that names who holds them."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from benchmark.errors import NoFreeGpu
from benchmark.gpus import cell_gpu, claimed_gpu, gpu_budget_problem, lock_path

from tests.conftest import tiny_grid, write_grid

REPO = Path(__file__).resolve().parents[1]

SPAWN = multiprocessing.get_context("spawn")


def _no_foreign(device: str, ours: set[int]) -> list[int]:
    return []


def _claimer(lock_dir: str, devices: list[str], slots: int, start, report) -> None:
    """A cell process: wait for the others, claim, report the claim, hold it until it is ended."""
    start.wait()
    try:
        with claimed_gpu(Path(lock_dir), devices, slots, foreign=_no_foreign) as claim:
            report.put((os.getpid(), claim.device, claim.slot))
            time.sleep(600)
    except NoFreeGpu as error:
        report.put((os.getpid(), None, str(error)))


def _start(n: int, lock_dir: Path, devices: list[str], slots: int = 1):
    start, report = SPAWN.Event(), SPAWN.Queue()
    processes = [SPAWN.Process(target=_claimer, args=(str(lock_dir), devices, slots, start, report))
                 for _ in range(n)]
    for process in processes:
        process.start()
    start.set()
    return processes, [report.get(timeout=60) for _ in processes]


def _stop(processes) -> None:
    """SIGTERM (an Event would hang here: a SIGKILLed waiter never acknowledges its wake-up)."""
    for process in processes:
        process.terminate()
        process.join(timeout=30)


def test_concurrent_claimers_get_distinct_gpus_and_one_more_is_refused(tmp_path: Path) -> None:
    devices = ["0", "1", "2", "3"]
    processes, claims = _start(5, tmp_path, devices)
    try:
        granted = [device for _, device, _ in claims if device is not None]
        refused = [message for _, device, message in claims if device is None]
        assert sorted(granted) == devices
        assert len(refused) == 1
        assert "no free GPU" in refused[0] and "4 visible (0, 1, 2, 3) x 1 slot(s)" in refused[0]
        # the message names every holder, by pid
        assert all(f"pid {pid} " in refused[0] for pid, device, _ in claims if device is not None)
    finally:
        _stop(processes)


def test_a_sigkilled_claimers_gpu_is_claimed_again(tmp_path: Path) -> None:
    devices = ["0", "1"]
    processes, claims = _start(2, tmp_path, devices)
    try:
        victim_pid, victim_device, _ = claims[0]
        os.kill(victim_pid, signal.SIGKILL)
        next(p for p in processes if p.pid == victim_pid).join(timeout=30)
        with claimed_gpu(tmp_path, devices, foreign=_no_foreign) as claim:
            assert claim.device == victim_device
    finally:
        _stop(processes)


def test_slots_spread_cells_over_gpus_before_they_share_one(tmp_path: Path) -> None:
    with ExitStack() as stack:
        claims = [stack.enter_context(claimed_gpu(tmp_path, ["0", "1"], 2, foreign=_no_foreign)) for _ in range(4)]
        assert [(claim.device, claim.slot) for claim in claims] == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
        with pytest.raises(NoFreeGpu, match=r"2 visible \(0, 1\) x 2 slot"):
            stack.enter_context(claimed_gpu(tmp_path, ["0", "1"], 2, foreign=_no_foreign))
    # released when the cells end
    with claimed_gpu(tmp_path, ["0", "1"], 2, foreign=_no_foreign) as claim:
        assert (claim.device, claim.slot) == ("0", 0)


def test_a_gpu_another_program_computes_on_is_skipped_and_named(tmp_path: Path) -> None:
    def busy_zero(device: str, ours: set[int]) -> list[int]:
        return [4242] if device == "0" else []

    with claimed_gpu(tmp_path, ["0", "1"], foreign=busy_zero) as claim:
        assert claim.device == "1"
    assert not lock_path(tmp_path, "0", 0).read_text()  # the skipped GPU's lock was let go
    with pytest.raises(NoFreeGpu, match="GPU 0 is in use by process.es. 4242 that are not saltbench cells"):
        with claimed_gpu(tmp_path, ["0"], foreign=busy_zero):
            pass


def test_cells_sharing_a_gpu_are_not_taken_for_foreign_programs(tmp_path: Path) -> None:
    """With two slots, the cell in the other slot is one of ours, not a foreign program."""
    processes, claims = _start(1, tmp_path, ["0"], slots=2)
    try:
        other_cell = claims[0][0]
        running_on_gpu = {other_cell, os.getpid()}

        def foreign(device: str, ours: set[int]) -> list[int]:
            return sorted(running_on_gpu - ours)

        with claimed_gpu(tmp_path, ["0"], 2, foreign=foreign) as claim:
            assert claim.slot == 1
        running_on_gpu.add(99999)  # and a program that is not a cell
        with pytest.raises(NoFreeGpu, match="in use by process.es. 99999 "):
            with claimed_gpu(tmp_path, ["0"], 2, foreign=foreign):
                pass
    finally:
        _stop(processes)


def test_cell_gpu_restricts_the_cell_to_its_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr("benchmark.gpus.foreign_processes", _no_foreign)  # a GPU machine's nvidia-smi
    with claimed_gpu(tmp_path, ["2"], foreign=_no_foreign):  # another cell holds GPU 2
        with cell_gpu(tmp_path, "auto", 1) as gpu:
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
            assert gpu["device"] == "3" and gpu["assigned_by"].startswith("saltbench GPU lock ")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    with cell_gpu(tmp_path, "cpu", 1) as gpu:
        assert gpu is None and os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_under_slurm_the_schedulers_gpu_is_used_without_a_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    with cell_gpu(tmp_path, "cuda", 1) as gpu:
        assert gpu == {"device": "0", "assigned_by": "SLURM job 77"}
    assert not list(tmp_path.iterdir())


def test_more_gpu_jobs_than_gpu_slots_are_refused_before_the_first_job() -> None:
    assert gpu_budget_problem(3, [], 1) is None  # no GPU: the cells run on the CPU
    assert gpu_budget_problem(2, ["0", "1"], 1) is None
    assert gpu_budget_problem(4, ["0", "1"], 2) is None
    assert "--resources gpu=3 is more than 2 visible GPU(s) (0, 1) x gpu_slots_per_device 1 = 2" in \
        gpu_budget_problem(3, ["0", "1"], 1)
    assert "give Snakemake --resources gpu=N, N at most 4" in gpu_budget_problem(None, ["0", "1"], 2)


@pytest.mark.slow
def test_snakemake_with_more_gpu_jobs_than_gpus_stops_with_the_reason(tmp_path: Path) -> None:
    """Two GPUs made visible (CUDA_VISIBLE_DEVICES; none needs to exist) and --resources gpu=3.
    Slow: a Snakemake start (20-60 s on 2 loaded cores) for a check the test above makes directly."""
    grid = write_grid(tmp_path, tiny_grid(tmp_path, device="auto"))
    done = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"),
                           "-d", str(tmp_path / "work"), "--configfile", str(grid), "--cores", "1", "--resources", "gpu=3"],
                          capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"})
    assert done.returncode != 0
    assert "saltbench GPUs: --resources gpu=3 is more than 2 visible GPU(s) (0, 1)" in done.stdout + done.stderr
    assert not (tmp_path / "work" / "results" / "datasets").exists()  # no job ran
