"""Write the grid's tables and figures with notes that say how every number was measured."""
from __future__ import annotations

from pathlib import Path

from benchmark.grid import expand_cells, has_size_axis
from benchmark.metrics import DICE_CONVENTION, HD95_CONVENTION
from benchmark.report.ablation import write_ablation_bubble
from benchmark.report.claims import write_claims
from benchmark.report.cost_table import build_cost_table, write_cost_table
from benchmark.report.curves import write_training_curves
from benchmark.report.pareto import write_pareto
from benchmark.report.qualitative import write_qualitative
from benchmark.report.sam2_table import write_sam2_table
from benchmark.report.settings import settings_notes
from benchmark.report.table1 import build_table1, write_table1
from benchmark.report.table1_stats import build_table1_stats, write_table1_stats
from benchmark.report.train_size import write_train_size
from benchmark.report.tuning import write_tuning
from benchmark.report.vs_published import build_vs_published, write_vs_published
from benchmark.summary import load_summaries


def _note(config: dict, summaries: list[dict]) -> str:
    data = dict.fromkeys(f"Data, {s['dataset']['label']}: {s['dataset']['data']}." for s in summaries)
    commits = sorted({s.get("provenance", {}).get("git_commit", "unknown") for s in summaries})
    resolutions = sorted({s.get("conventions", {}).get("resolution", "unknown") for s in summaries})
    lines = [
        f"Grid `{config.get('name', 'grid')}`: {len(summaries)} cells, seeds {config['seeds']}, "
        f"{config['train']['epochs']} epochs, batch {config['train']['batch_size']}, lr {config['train']['lr']}, "
        f"input {config['input_size']} px.",
        *data,
        f"Dice: {DICE_CONVENTION}",
        f"HD95: {HD95_CONVENTION}",
        "Metrics computed at: " + "; ".join(resolutions) + ".",
        "Code: " + ", ".join(commits) + ".",
        *settings_notes(config, summaries),
    ]
    return "\n\n".join(lines)


def grid_summaries(config: dict) -> list[dict]:
    """The summaries of exactly the cells of `config`, in table order (other cells in results/
    are ignored); an error when any is missing, so no table silently drops a row."""
    wanted = list(expand_cells(config))
    by_id = {s["cell"]: s for s in load_summaries(Path(config["results_dir"]) / "cells")}
    missing = [cell for cell in wanted if cell not in by_id]
    if missing:
        raise FileNotFoundError(f"{len(missing)} cell(s) of this grid have no summary yet, e.g. {missing[:3]}")
    return [by_id[cell] for cell in wanted]


def write_grid_table1(config: dict, summaries: list[dict] | None = None) -> Path:
    """figures/table1.{md,csv,tex} over the grid's cells (read unless given); the markdown path."""
    summaries = grid_summaries(config) if summaries is None else summaries
    out = Path(config["figures_dir"])
    write_table1(build_table1(summaries), out, _note(config, summaries))
    return out / "table1.md"


def write_grid_figures(config: dict) -> list[Path]:
    """Every table and figure of the grid into config["figures_dir"]: Table 1 (md, csv, tex), its
    statistics, the comparison with the published numbers, the SAM2 table, the cost table, the
    ablation bubble plot, the Dice-against-cost Pareto figure, the qualitative figure (Fig. 3) and the training
    curves. `config` is validated (benchmark.config.load_config), its `paper` section included."""
    summaries = grid_summaries(config)
    out = Path(config["figures_dir"])
    cells_dir = Path(config["results_dir"]) / "cells"
    labels = {s["dataset"]["name"]: s["dataset"]["label"] for s in summaries}
    notes = settings_notes(config, summaries)  # which rows trained otherwise than the grid says, in every table
    table1 = write_grid_table1(config, summaries)
    return [
        table1, table1.with_suffix(".csv"), table1.with_suffix(".tex"),
        *write_table1_stats(build_table1_stats(summaries, cells_dir), out, labels, notes),
        *write_vs_published(config, build_vs_published(config, summaries), out, notes),
        *write_sam2_table(config, summaries, out, notes),
        *write_cost_table(build_cost_table(summaries, cells_dir), out, notes),
        write_ablation_bubble(config, summaries, out),
        write_pareto(config, summaries, out),
        write_qualitative(config, summaries, out),
        write_training_curves(config, summaries, out),
        *(write_tuning(config, out) if config.get("tune") else []),
        *write_claims(config, summaries, out),
        *([write_train_size(config, summaries, out)] if has_size_axis(config) else []),
    ]
