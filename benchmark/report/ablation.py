"""Fig. 4a as a bubble plot over the grid's PEFT rows: x = rank combination, y = Dice, bubble
area proportional to % trainable; published ablation points (section 4.4) overlaid hollow where
the grid maps a row to them."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.report.pictures import provenance_caption, save_png
from benchmark.paper.mapping import paper_section
from benchmark.paper.published import ABLATION_DATASET, lookup
from benchmark.report.rows import by_row, distinct, on_dataset, seed_stats

MAX_AREA = 1600.0  # points^2 of the largest bubble
COMPONENTS = {"attn.qkv": "QKV", "attn.proj": "Proj", "mlp": "MLP", "neck": "Neck", "stage.proj": "Stage proj"}


def _defaults(name: str) -> dict:
    """The method's registered hyper-parameter defaults (what a config entry leaves out);
    empty for a method this process cannot load, whose label then shows only what the entry says."""
    import methods

    try:
        return dict(methods.get_method(name).hparams)
    except (KeyError, ValueError):
        return {}


def _value(value: object) -> str:
    """A SALT rank as the config gives it: a count (200) or a fraction of the singular values (50%)."""
    return f"{value:.0%}" if isinstance(value, float) else str(value)


def _per_component(targets: list[str], default: object, overrides: dict) -> list[str]:
    """'MHA 200 / MLP 200': qkv and proj are one 'MHA' entry when they share a value."""
    values = {target: overrides.get(target, default) for target in targets}
    if "attn.qkv" in values and values.get("attn.proj", object()) == values["attn.qkv"]:
        mha = values.pop("attn.qkv")
        values.pop("attn.proj")
        values = {"MHA": mha, **values}
    return [f"{COMPONENTS.get(name, name)} {_value(value)}" for name, value in values.items()]


def rank_label(method: dict) -> str:
    """x label of a PEFT row, as Fig. 4a names its points: "LoRA 4" for LoRA, "LoRA 256 / MHA 200 /
    MLP 200 / Neck 8" for SALT (its LoRA rank, then the SALT rank of each adapted component)."""
    hparams = {**_defaults(method["name"]), **{k: v for k, v in method.items() if v is not None}}
    if "rank" not in hparams:
        return method["label"]
    ranks = hparams.get("ranks") or {}
    low_rank = f"{hparams['rank']}" + "".join(f", {COMPONENTS.get(k, k)} {v}" for k, v in ranks.items())
    if method["name"] != "salt":
        return f"{method['label']} {low_rank}"
    targets = list(hparams.get("targets") or [])
    sv_ranks = _per_component(targets, hparams.get("sv_rank"), hparams.get("sv_ranks") or {})
    return " / ".join([f"LoRA {low_rank}", *sv_ranks])


def _size_legend(max_pct: float, area_per_pct: float) -> list[Line2D]:
    """Three reference bubbles (max, max/4, max/16, two significant digits)."""
    handles = []
    for fraction in (1.0, 0.25, 0.0625):
        value = float(f"{max_pct * fraction:.2g}")
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=math.sqrt(value * area_per_pct),
                              markerfacecolor="lightgray", markeredgecolor="gray", label=f"{value:g}% trainable"))
    return handles


def ablation_figure(config: dict, summaries: list[dict]) -> Figure:
    """The figure (not saved). Our points: one scatter per dataset (gid "ours:<dataset>"), one point
    per PEFT row that ran on it; published points: gid "published"."""
    peft = {key: cells for key, cells in by_row(summaries).items() if cells[0]["method"]["group"] == "peft"}
    datasets = {s["dataset"]["name"]: s["dataset"]["label"] for s in summaries}
    _, mapping = paper_section(config)
    published = {key: lookup(ref) for key, ref in mapping.items() if key in peft and ref.startswith("ablation/")}
    several_backbones = len({cells[0]["backbone"] for cells in peft.values()}) > 1
    labels = [(f"{cells[0]['backbone']}: " if several_backbones else "") + rank_label(cells[0]["method"])
              for cells in peft.values()]

    fig = Figure(figsize=(max(9.0, 1.3 * len(peft) + 5.0), 7.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.08, right=0.72, bottom=0.33, top=0.93)
    pcts = [float(cells[0]["params"]["trainable_pct"]) for cells in peft.values()]
    pcts += [row.trainable_pct for row in published.values() if row.trainable_pct is not None]
    area_per_pct = MAX_AREA / max(max(pcts, default=1.0), 1e-9)
    colours = [f"C{i % 10}" for i in range(len(datasets))]
    shifts = {name: (index - (len(datasets) - 1) / 2) * 0.12 for index, name in enumerate(datasets)}
    for index, (name, label) in enumerate(datasets.items()):
        shift = shifts[name]
        xs, ys, sizes = [], [], []
        for x, cells in enumerate(peft.values()):
            mean, _, n = seed_stats([cell["metrics"]["dice_mean"] for cell in on_dataset(cells, name)])
            if n:
                xs.append(x + shift)
                ys.append(mean)
                sizes.append(area_per_pct * float(cells[0]["params"]["trainable_pct"]))
        ax.scatter(xs, ys, s=sizes, color=colours[index], alpha=0.55, edgecolors="black", linewidths=0.6,
                   label=textwrap.fill(label, 24), gid=f"ours:{name}")
    if published:
        keys = list(peft)
        drive = [name for name, column in paper_section(config)[0].items() if column == ABLATION_DATASET]
        shift = shifts.get(drive[0], 0.0) if drive else 0.0
        xs = [keys.index(key) + shift for key in published]
        ys = [row.dice[ABLATION_DATASET] for row in published.values()]
        pct = [row.trainable_pct for row in published.values()]
        unstated = "\n(ring of fixed size: % not stated)" if None in pct else ""
        ax.scatter(xs, ys, s=[60.0 if p is None else area_per_pct * p for p in pct], facecolors="none",
                   edgecolors="black", linewidths=1.5, gid="published",
                   label=f"published, {ABLATION_DATASET}\n(paper section 4.4){unstated}")
    if not peft:
        ax.text(0.5, 0.5, "This grid has no PEFT rows: nothing to plot.", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.7, max(len(labels) - 0.3, 0.7))
    ax.set_ylabel("Dice (mean over seeds)")
    ax.set_xlabel("rank combination")
    ax.set_title(f"Dice per rank combination, bubble area ∝ % trainable (grid {config.get('name', 'grid')})")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.18)  # autoscaling sees bubble centres only; room for the largest bubble's radius
    first = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="dataset")
    for handle in first.legend_handles:
        handle.set_sizes([60.0])
    ax.add_artist(first)
    bubble = math.sqrt(MAX_AREA) / 8  # the largest bubble's diameter in font sizes (8 pt): room for it in the key
    ax.legend(handles=_size_legend(max(pcts, default=1.0), area_per_pct), loc="lower left",
              bbox_to_anchor=(1.02, 0.0), fontsize=8, labelspacing=0.8 * bubble, borderpad=0.6 * bubble,
              handlelength=bubble, handletextpad=0.4 * bubble, title="bubble area")
    provenance_caption(fig, distinct([cell["weights"] for cells in peft.values() for cell in cells]) or "–",
                       distinct([s["dataset"]["data"] for s in summaries]), fontsize=7)
    return fig


def write_ablation_bubble(config: dict, summaries: list[dict], out_dir: Path) -> Path:
    return save_png(ablation_figure(config, summaries), Path(out_dir) / "ablation_bubble.png", dpi=150)
