"""The trade-off figure: average Dice against % trainable and against peak memory, one point per
row, the Pareto front (no other row has at least the Dice for less) drawn on each panel; the
paper's published points beside ours on the % trainable panel where the grid maps rows to them.

Memory is the accelerator's peak reserved memory where every row measured one, else the host's
peak RSS (the axis says which); fronts on the memory panel are drawn per device, because memory
measured on different devices is not compared. Rows prompted from the ground truth (oracle prompts)
are plotted with their prompt in the legend but left out of every front: they are not prompt-free."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter

from benchmark.paper.mapping import paper_section
from benchmark.paper.published import GROUP_TOTAL_M, PublishedRow, lookup
from benchmark.report.pictures import provenance_caption, save_png
from benchmark.report.rows import by_row, distinct, is_oracle, on_dataset, prompt_tag, seed_stats

MARKERS = "osD^vP*Xh<>p"


@dataclass(frozen=True)
class Point:
    """One row of the grid as the figure plots it."""

    key: str
    label: str
    dice: float
    pct: float
    memory: float | None
    device: str
    oracle: bool = False  # its test-time prompt came from the ground truth: plotted, never on a front


def percent_ticks(limits: tuple[float, float], values: list[float]) -> list[float]:
    """Readable ticks on the symmetric log axis (linear below 0.1%): 0 and the powers of ten inside
    the limits; where that gives fewer than three, 2 and 5 times them too; and where still fewer,
    the smallest and largest value to two digits, so a grid within one decade has ticks as well."""
    lo, hi = limits
    ticks = [value for value in [0.0] + [10.0 ** k for k in range(-1, 3)] if lo <= value <= hi]
    if len(ticks) < 3:
        candidates = [0.0] + [m * 10.0 ** k for k in range(-1, 3) for m in (1, 2, 5)]
        ticks = [value for value in candidates if lo <= value <= hi]
    if len(ticks) < 3 and values:
        ticks += [float(f"{min(values):.2g}"), float(f"{max(values):.2g}")]
    return sorted(set(ticks))


def _label(cells: list[dict], several_backbones: bool, datasets: int) -> str:
    method = cells[0]["method"]
    rank = f" r{method['rank']}" if method.get("rank") is not None else ""
    backbone = f" ({cells[0]['backbone']})" if several_backbones and method["group"] != "baseline" else ""
    ran = {cell["dataset"]["name"] for cell in cells}
    subset = f", {len(ran)} of {datasets} datasets" if len(ran) < datasets else ""
    prompt = prompt_tag(cells[0])
    return f"{method['label']}{rank}{prompt}{backbone}{subset}"


def _memory(cells: list[dict], accelerator: bool) -> float | None:
    key = "peak_reserved_mb" if accelerator else "peak_host_rss_mb"
    values = [cell["measured"][key] for cell in cells if (cell.get("measured") or {}).get(key) is not None]
    return float(np.mean(values)) if values else None


def points(summaries: list[dict]) -> tuple[list[Point], bool]:
    """Our points, and whether memory is the accelerator's (every row measured one) or host RSS.
    A row's Dice is the mean over the datasets it ran on of its mean over seeds."""
    rows = by_row(summaries)
    datasets = list(dict.fromkeys(s["dataset"]["name"] for s in summaries))
    accelerator = bool(rows) and all(_memory(cells, True) is not None for cells in rows.values())
    several = len({cells[0]["backbone"] for cells in rows.values() if cells[0]["method"]["group"] != "baseline"}) > 1
    found = []
    for key, cells in rows.items():
        means = [seed_stats([c["metrics"]["dice_mean"] for c in on_dataset(cells, name)])[0] for name in datasets]
        means = [m for m in means if m is not None]
        devices = distinct([(c.get("measured") or c.get("provenance") or {}).get("device", "unknown") for c in cells])
        found.append(Point(key, _label(cells, several, len(datasets)), float(np.mean(means)) if means else float("nan"),
                           float(cells[0]["params"]["trainable_pct"]), _memory(cells, accelerator), devices,
                           is_oracle(cells[0])))
    return found, accelerator


def pareto_front(xy: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (x at most and Dice at least, one strictly
    better), sorted by x: less cost for at least the accuracy."""
    kept = [i for i, (x, y) in enumerate(xy)
            if not np.isnan(y) and not any((ox <= x and oy >= y) and (ox < x or oy > y) for ox, oy in xy if not np.isnan(oy))]
    return sorted(kept, key=lambda i: xy[i][0])


def _published_pct(row: PublishedRow) -> float | None:
    """The printed percentage, else the printed count over its group's printed total."""
    if row.trainable_pct is not None:
        return row.trainable_pct
    return None if row.trainable_m is None else 100.0 * row.trainable_m / GROUP_TOTAL_M[row.table]


def _published_dice(row: PublishedRow) -> float | None:
    """Table 1's printed Average, else the mean of the printed datasets (SAM2 table, ablation)."""
    values = [v for v in row.dice.values() if v is not None]
    return row.dice.get("Average") or (float(np.mean(values)) if values else None)


def _draw_front(ax, xy: list[tuple[float, float]], style: str, label: str | None) -> None:
    front = pareto_front(xy)
    if front:
        ax.step([xy[i][0] for i in front], [xy[i][1] for i in front], where="post", linestyle=style, color="gray",
                linewidth=1.2, zorder=1, label=label)


def pareto_figure(config: dict, summaries: list[dict]) -> Figure:
    """The figure (not saved): left % trainable, right peak memory; our points gid "ours",
    published ones gid "published", fronts gid "front"."""
    ours, accelerator = points(summaries)
    _, mapping = paper_section(config)
    colours = {p.key: f"C{i % 10}" for i, p in enumerate(ours)}
    markers = {p.key: MARKERS[i % len(MARKERS)] for i, p in enumerate(ours)}
    fig = Figure(figsize=(14.0, 6.2))
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    fig.subplots_adjust(left=0.06, right=0.72, bottom=0.2, top=0.9, wspace=0.22)
    for point in ours:
        style = dict(color=colours[point.key], marker=markers[point.key], s=70, edgecolors="black", linewidths=0.6, zorder=3)
        left.scatter([point.pct], [point.dice], gid="ours", **style)
        if point.memory is not None:
            right.scatter([point.memory], [point.dice], gid="ours", **style)
    _draw_front(left, [(p.pct, p.dice) for p in ours if not p.oracle], "--", "Pareto front (ours)")
    devices = list(dict.fromkeys(p.device for p in ours if p.memory is not None))
    for index, device in enumerate(devices):
        xy = [(p.memory, p.dice) for p in ours if p.memory is not None and p.device == device and not p.oracle]
        _draw_front(right, xy, ["--", ":", "-."][index % 3], f"front on {device}" if len(devices) > 1 else None)
    published = []
    for point in ours:
        row = lookup(mapping[point.key]) if point.key in mapping else None
        if row is not None and _published_pct(row) is not None and _published_dice(row) is not None:
            published.append(point.key)
            left.scatter([_published_pct(row)], [_published_dice(row)], s=90, marker=markers[point.key],
                         facecolors="none", edgecolors=colours[point.key], linewidths=1.8, zorder=2, gid="published")
    left.set_xscale("symlog", linthresh=0.1)
    left.xaxis.set_major_locator(FixedLocator(percent_ticks(left.get_xlim(), [p.pct for p in ours])))
    left.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
    left.set_xlabel("% trainable parameters (of the model)\nsymmetric log scale, linear below 0.1%")
    memory_kind = "accelerator peak reserved memory, MB" if accelerator else "host peak RSS, MB (no accelerator measured)"
    right.set_xlabel(f"{memory_kind}\nmean over the row's cells")
    for ax in (left, right):
        ax.set_ylabel("average Dice (datasets the row ran on)")
        ax.grid(alpha=0.3)
    left.set_title("Dice vs % trainable")
    right.set_title("Dice vs peak memory" + (f" ({devices[0]})" if len(devices) == 1 else ""))
    handles = [Line2D([], [], linestyle="", marker=markers[p.key], markerfacecolor=colours[p.key], markeredgecolor="black",
                      markersize=8, label=p.label) for p in ours]
    if published:
        handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="none", markeredgecolor="black",
                              markersize=9, label="hollow: published point of the\nrow of the same colour (paper)"))
    handles.append(Line2D([], [], linestyle="--", color="gray", label="Pareto front"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.73, 0.9), fontsize=8, frameon=False)
    fig.suptitle(f"Accuracy against cost per row (grid {config.get('name', 'grid')})")
    weights = distinct([s["weights"] for s in summaries])
    data = distinct([s["dataset"]["data"] for s in summaries])
    provenance_caption(fig, weights, data, fontsize=7)
    return fig


def write_pareto(config: dict, summaries: list[dict], out_dir: Path) -> Path:
    return save_png(pareto_figure(config, summaries), Path(out_dir) / "pareto.png", dpi=150)
