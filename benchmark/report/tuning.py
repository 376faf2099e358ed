"""The tuning budget made visible: every trial of a tuned grid (row, dataset, value, seed, validation
Dice, test Dice) in figures/tuning.csv, and per dataset the validation Dice of every tuned row against
the tuned value, the chosen value starred, in figures/tuning.png. The test Dice is reported beside
the validation Dice, never used: benchmark.tuning chose from the validation column alone."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.grid import expand_trials, tuned_param, tuning_key
from benchmark.io import write_text
from benchmark.report.pictures import provenance_caption, save_png
from benchmark.report.rows import csv_text, distinct, row_label
from benchmark.summary import read_summary
from benchmark.tuning import read_selection, trial_score

COLUMNS = ("row", "dataset", "param", "value", "seed", "val_dice", "test_dice", "chosen", "diverged_epoch", "cell")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def tuning_records(config: dict) -> list[dict]:
    """One record per trial, in the grid's order, with the row as Table 1 names it."""
    param = tuned_param(config)
    cells_dir = Path(config["results_dir"]) / "cells"
    trials = list(expand_trials(config).values())
    several = len({cell.backbone for cell in trials if cell.backbone}) > 1
    chosen_by_key = {key: read_selection(config, key)["chosen"] for key in dict.fromkeys(map(tuning_key, trials))}
    records = []
    for trial in trials:
        summary = read_summary(cells_dir / trial.id / "summary.json")
        chosen = chosen_by_key[tuning_key(trial)]
        value = trial.entry["train"][param]
        records.append({"row": row_label(summary, several), "dataset": summary["dataset"]["label"], "param": param,
                        "value": value, "seed": trial.seed, "val_dice": round(trial_score(summary), 4),
                        "test_dice": round(summary["metrics"]["dice_mean"], 4), "chosen": value == chosen,
                        "diverged_epoch": (summary.get("tuning") or {}).get("diverged_epoch"), "cell": trial.id,
                        "weights": summary["weights"]})
    return records


def _means(records: list[dict]) -> dict[float, float]:
    """Mean validation Dice over seeds per value."""
    values: dict[float, list[float]] = {}
    for record in records:
        values.setdefault(record["value"], []).append(record["val_dice"])
    return {value: sum(scores) / len(scores) for value, scores in sorted(values.items())}


def tuning_figure(config: dict, records: list[dict]) -> Figure:
    """One panel per dataset: mean validation Dice over seeds against the value, a line per row,
    the chosen value starred."""
    param = tuned_param(config)
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    rows = list(dict.fromkeys(r["row"] for r in records))
    fig = Figure(figsize=(5.2 * len(datasets) + 2.6, 4.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        for index, row in enumerate(rows):
            mine = [r for r in records if r["dataset"] == dataset and r["row"] == row]
            if not mine:
                continue
            means = _means(mine)
            style = {"color": f"C{index % 10}", "marker": MARKERS[index % len(MARKERS)], "markerfacecolor": "none"}
            ax.plot(list(means), list(means.values()), label=row, **style)
            chosen = next(r["value"] for r in mine if r["chosen"])
            ax.plot(chosen, means[chosen], marker="*", markersize=13, color=style["color"], markeredgecolor="black",
                    linestyle="")
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["value"] for r in records}))
        ax.set_xticklabels([f"{v:g}" for v in sorted({r["value"] for r in records})], fontsize=8)
        ax.minorticks_off()
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel(f"train.{param}", fontsize=9)
        ax.set_ylabel("mean validation Dice over seeds", fontsize=8)
        ax.set_title(f"{dataset}\n(★ = value chosen on validation)", fontsize=10)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(0.80, 0.5), fontsize=8, title="row")
    budget = config["tune"].get("epochs", config["train"]["epochs"])
    fig.suptitle(f"Tuning (grid {config.get('name', 'grid')}): {param} over {len(set(r['value'] for r in records))} "
                 f"values, trials of {budget} epochs", fontsize=10)
    caption = provenance_caption(fig, distinct([r["weights"] for r in records]) or "–", None)
    fig.tight_layout(rect=(0.0, caption, 0.79, 0.94))
    return fig


def write_tuning(config: dict, out_dir: Path) -> list[Path]:
    """figures/tuning.csv and tuning.png of a tuned grid."""
    records = tuning_records(config)
    out = Path(out_dir)
    write_text(out / "tuning.csv", csv_text(records, COLUMNS))
    return [out / "tuning.csv", save_png(tuning_figure(config, records), out / "tuning.png", dpi=130)]
