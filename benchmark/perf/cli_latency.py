"""How long `saltbench --help`, `validate` and `cells` take, for two source trees side by side.

    python -m benchmark.perf.cli_latency --before /path/to/old/checkout [--after .] [--runs 5]

Each command runs in a fresh process (what a user waits for: interpreter start, imports, the
check), with PYTHONPATH set to one tree or the other, the two trees alternating run by run so
that a change in the host's load falls on both alike. Prints the median seconds of each tree and
their ratio, and the median CPU seconds, which the load moves much less. The grids are small ones
written to a temporary folder: a tiny U-Net grid (no backbone), and a LiteMedSAM grid with LoRA and
SALT rows beside the U-Net (neither QLoRA nor SAM2), whose rank check builds LiteMedSAM on the meta
device unless a passing verdict is remembered (benchmark/check_cache.py). Each tree gets its own
empty verdict cache, so a tree's first run is the first validation a user ever makes; it is shown
apart ("first"), and the medians are over the later runs.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

DATA = {"bright": {"kind": "synthetic", "modality": "bright_speckle", "n_train": 4, "n_test": 2, "size": 64}}
UNET = {"id": "unet_tiny", "name": "unet", "channels": [8, 16, 32], "num_res_units": 1}
GRIDS = {
    "U-Net only": {"baselines": [UNET]},
    "LiteMedSAM + LoRA, SALT, U-Net": {
        "baselines": [UNET], "input_size": 256, "backbones": {"lite": {"name": "litemedsam"}},
        "methods": [{"id": "lora_r4", "name": "lora", "rank": 4}, {"id": "salt_r4", "name": "salt", "rank": 4}]},
}


def write_grids(folder: Path) -> dict[str, Path]:
    paths = {}
    for index, (name, grid) in enumerate(GRIDS.items()):
        path = folder / f"grid{index}.yaml"
        path.write_text(yaml.safe_dump({"name": f"latency{index}", "results_dir": str(folder / "results"),
                                        "device": "cpu", "input_size": 64, "seeds": [0], "datasets": DATA,
                                        "train": {"epochs": 1}, **grid}))
        paths[name] = path
    return paths


def seconds(tree: Path, argv: list[str], cwd: Path, cache: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of `python -m benchmark.cli *argv` importing saltbench
    from `tree`. The CPU seconds hardly move with the host's load: about what the command takes
    on an idle core."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "SALTBENCH_CACHE": str(cache)}
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.cli", *argv], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="source tree of the old code (a checkout)")
    parser.add_argument("--after", type=Path, default=Path("."), help="source tree of the new code (default: .)")
    parser.add_argument("--runs", type=int, default=6,
                        help="runs of each command per tree, the first with an empty verdict cache (default: %(default)s)")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2: the first run of each tree is shown apart from the median")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        commands = [("--help", "", ["--help"])]
        for grid, path in write_grids(folder).items():
            commands += [(command, grid, [command, "--config", str(path)]) for command in ("validate", "cells")]
        times = {(command, grid, tree): [] for command, grid, _ in commands for tree in trees}
        for _ in range(args.runs):
            for command, grid, argv in commands:
                for tree, root in trees.items():
                    times[(command, grid, tree)].append(seconds(root, argv, folder, folder / f"cache-{tree}"))
    print(f"{args.runs} runs each (medians over the last {args.runs - 1}), trees alternating; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end\n")
    print("| command | grid | before: wall s | after: wall s | after / before | before: CPU s | after: CPU s "
          "| first run, before / after: wall s |\n|---|---|---|---|---|---|---|---|")
    for command, grid, _ in commands:
        (before, before_cpu), (after, after_cpu) = (
            (statistics.median(w for w, _ in times[(command, grid, tree)][1:]),
             statistics.median(c for _, c in times[(command, grid, tree)][1:])) for tree in trees)
        first = " / ".join(f"{times[(command, grid, tree)][0][0]:.2f}" for tree in trees)
        print(f"| {command} | {grid or '–'} | {before:.2f} | {after:.2f} | {after / before:.2f} | "
              f"{before_cpu:.2f} | {after_cpu:.2f} | {first} |")


if __name__ == "__main__":
    main()
