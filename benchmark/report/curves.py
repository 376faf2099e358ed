"""Training curves from the cells' train_log.csv: per dataset, the training loss and (when the grid
selects its test epoch on validation) the validation Dice per epoch of every trained row, the
selected epoch marked. With several seeds a row's line is the mean over seeds."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.report.pictures import provenance_caption, save_png
from benchmark.report.rows import distinct, on_dataset, row_label, table_order

LOG = "train_log.csv"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def read_log(path: Path) -> dict[str, list[float]]:
    """epoch, loss and val_dice columns as floats (val_dice NaN when nothing was validated)."""
    with Path(path).open() as handle:
        rows = list(csv.DictReader(handle))
    return {column: [float(row[column]) for row in rows] for column in ("epoch", "loss", "val_dice")}


def _mean_over_seeds(logs: list[dict[str, list[float]]], column: str) -> tuple[list[float], list[float]]:
    """(epochs, mean of `column` over the seeds that reached each epoch)."""
    epochs = sorted({epoch for log in logs for epoch in log["epoch"]})
    means = []
    for epoch in epochs:
        values = [log[column][log["epoch"].index(epoch)] for log in logs if epoch in log["epoch"]]
        means.append(sum(values) / len(values))
    return epochs, means


def curves_figure(config: dict, summaries: list[dict]) -> Figure:
    """The figure (not saved): one line of panels per dataset, loss left, validation Dice right
    (a note instead when the grid evaluates the last epoch); one coloured line per trained row."""
    cells_dir = Path(config["results_dir"]) / "cells"
    validated = config["train"]["selection"] == "validation"
    rows = {key: cells for key, cells in table_order(summaries).items() if cells[0]["trained"]["epochs"] > 0}
    datasets = {s["dataset"]["name"]: s["dataset"]["label"] for s in summaries}
    several = len({s["backbone"] for s in summaries if s["method"]["group"] != "baseline"}) > 1
    # colour and hollow marker per row: rows whose points coincide (one epoch, equal losses) stay visible
    styles = {key: {"color": f"C{index % 10}", "marker": MARKERS[index % len(MARKERS)], "markersize": 7,
                    "markerfacecolor": "none", "markeredgewidth": 1.5} for index, key in enumerate(rows)}

    fig = Figure(figsize=(13.0, 3.4 * len(datasets) + 1.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    for line, (dataset, label) in enumerate(datasets.items()):
        loss_ax, dice_ax = axes[line]
        for key, cells in rows.items():
            runs = on_dataset(cells, dataset)
            if not runs:
                continue
            logs = [read_log(cells_dir / cell["cell"] / LOG) for cell in runs]
            name = row_label(cells[0], several)
            loss_ax.plot(*_mean_over_seeds(logs, "loss"), label=name, **styles[key])
            if validated:
                epochs, dice = _mean_over_seeds(logs, "val_dice")
                dice_ax.plot(epochs, dice, label=name, **styles[key])
                for cell in runs:  # the epoch each seed's test used
                    selected = cell["trained"]["selected_epoch"]
                    if selected in epochs and cell["trained"]["val_dice"] is not None:
                        dice_ax.plot(selected, cell["trained"]["val_dice"], marker="*", markersize=11,
                                     color=styles[key]["color"], markeredgecolor="black", linestyle="")
        loss_ax.set_title(f"{label}\ntraining loss", fontsize=10)
        loss_ax.set_ylabel("loss (mean over the epoch's steps)", fontsize=8)
        dice_ax.set_title(f"{label}\nvalidation Dice" + (" (★ = epoch tested)" if validated else ""), fontsize=10)
        dice_ax.set_ylabel("mean validation Dice", fontsize=8)
        if not validated:
            dice_ax.text(0.5, 0.5, "no validation curve: this grid tests the last epoch\n(train.selection: last)",
                         ha="center", va="center", transform=dice_ax.transAxes, fontsize=9)
            dice_ax.axis("off")
            dice_ax.set_title(f"{label}\nvalidation Dice", fontsize=10)
        else:
            dice_ax.set_ylim(0.0, 1.0)
        for ax in (loss_ax, dice_ax) if validated else (loss_ax,):
            ax.set_xlabel("epoch", fontsize=8)
            ax.grid(alpha=0.3)
            epochs = [e for e in range(1, config["train"]["epochs"] + 1)]
            ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: math.ceil(len(epochs) / 12)])
    if not rows:
        axes[0][0].text(0.5, 0.5, "This grid trains no row: nothing to plot.", ha="center", va="center",
                        transform=axes[0][0].transAxes)
    handles, names = [], []
    for ax in axes[:, 0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    if handles:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(0.81, 0.5), fontsize=8, title="row")
    seeds = sorted({s["seed"] for s in summaries})
    fig.suptitle(f"Training curves (grid {config.get('name', 'grid')}; "
                 f"{'mean over seeds ' + str(seeds) if len(seeds) > 1 else 'seed ' + str(seeds[0])})", fontsize=10)
    caption = provenance_caption(fig, distinct([s["weights"] for cells in rows.values() for s in cells]) or "–", None)
    fig.tight_layout(rect=(0.0, caption, 0.79, 0.96))
    return fig


def write_training_curves(config: dict, summaries: list[dict], out_dir: Path) -> Path:
    return save_png(curves_figure(config, summaries), Path(out_dir) / "training_curves.png", dpi=130)
