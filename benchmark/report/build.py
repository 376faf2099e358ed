"""Write the grid's Table 1 with a note that says how every number was measured."""
from __future__ import annotations

from pathlib import Path

from benchmark.config import expand_cells
from benchmark.metrics import DICE_CONVENTION, HD95_CONVENTION
from benchmark.report.table1 import build_table1, load_summaries, write_table1


def _note(config: dict, summaries: list[dict]) -> str:
    weights = sorted({s["weights"] for s in summaries})
    data = sorted({s["dataset"]["data"] for s in summaries})
    commits = sorted({s.get("provenance", {}).get("git_commit", "unknown") for s in summaries})
    lines = [
        f"Grid `{config.get('name', 'grid')}`: {len(summaries)} cells, seeds {config['seeds']}, "
        f"{config['train']['epochs']} epochs, batch {config['train']['batch_size']}, lr {config['train']['lr']}, "
        f"input {config['input_size']} px.",
        "Weights: " + "; ".join(weights) + ".",
        "Data: " + "; ".join(data) + ".",
        f"Dice: {DICE_CONVENTION}",
        f"HD95: {HD95_CONVENTION}",
        "Code: " + ", ".join(commits) + ".",
    ]
    return "\n\n".join(lines)


def write_grid_table1(config: dict) -> Path:
    """Table 1 over exactly the cells of `config` (other cells in results/ are ignored)."""
    wanted = list(expand_cells(config))
    cells_dir = Path(config["results_dir"]) / "cells"
    by_id = {s["cell"]: s for s in load_summaries(cells_dir)}
    missing = [cell for cell in wanted if cell not in by_id]
    if missing:
        raise FileNotFoundError(f"{len(missing)} cell(s) of this grid have no summary yet, e.g. {missing[:3]}")
    summaries = [by_id[cell] for cell in wanted]
    out = Path(config["figures_dir"])
    write_table1(build_table1(summaries), out, _note(config, summaries))
    return out / "table1.md"
