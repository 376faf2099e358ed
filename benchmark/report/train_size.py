"""Dice against the number of training images (the training-set-size axis, a dataset's
`train_subsets`): per dataset, one line per trained row through its subsets and its whole training
set, mean over seeds. The low-resource claim (figures/claims.md) is read off these numbers."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.report.pictures import provenance_caption, save_png
from benchmark.report.rows import distinct, row_label, table_order

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def size_points(summaries: list[dict]) -> dict[str, dict[str, dict[int, float]]]:
    """dataset -> row label -> training images -> mean test Dice over seeds."""
    several = len({s["backbone"] for s in summaries if s["method"]["group"] == "peft"}) > 1
    points: dict[str, dict[str, dict[int, list[float]]]] = {}
    for cells in table_order(summaries).values():
        if cells[0]["trained"]["epochs"] == 0:
            continue
        for cell in cells:
            size = cell["dataset"].get("n_train_subset")
            dataset = cell["dataset"]["name"] if size is None else cell["dataset"]["name"].removesuffix(f"_n{size}")
            images = cell["trained"]["n_images"]["train"]
            points.setdefault(dataset, {}).setdefault(row_label(cell, several), {}).setdefault(images, []).append(
                cell["metrics"]["dice_mean"])
    return {d: {row: {n: sum(v) / len(v) for n, v in sorted(sizes.items())} for row, sizes in rows.items()}
            for d, rows in points.items() if any(len(sizes) > 1 for sizes in rows.values())}


def train_size_figure(config: dict, summaries: list[dict]) -> Figure:
    points = size_points(summaries)
    fig = Figure(figsize=(5.0 * max(len(points), 1) + 2.6, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(points), 1), squeeze=False)[0]
    for ax, (dataset, rows) in zip(axes, points.items()):
        for index, (row, sizes) in enumerate(rows.items()):
            ax.plot(list(sizes), list(sizes.values()), label=row, color=f"C{index % 10}",
                    marker=MARKERS[index % len(MARKERS)], markerfacecolor="none")
        ax.set_xscale("log", base=2)
        ticks = sorted({n for sizes in rows.values() for n in sizes})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(n) for n in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("training images (nested subsets, then the whole set)", fontsize=8)
        ax.set_ylabel("mean test Dice over seeds", fontsize=8)
        ax.set_title(dataset, fontsize=10)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(0.80, 0.5), fontsize=8, title="row")
    fig.suptitle(f"Dice against training-set size (grid {config.get('name', 'grid')})", fontsize=10)
    caption = provenance_caption(fig, distinct([s["weights"] for s in summaries]) or "–", None)
    fig.tight_layout(rect=(0.0, caption, 0.79, 0.94))
    return fig


def write_train_size(config: dict, summaries: list[dict], out_dir: Path) -> Path:
    return save_png(train_size_figure(config, summaries), Path(out_dir) / "train_size.png", dpi=130)
