"""Parameter accounting: our trainable counts next to the SALT paper's, row by row.

Counts need no weights: every cell model is built with random weights under the meta device,
where a parameter has a shape but no storage (the backbone is constructed on the CPU and moved
there, see models.build_backbone), so decomposing 48 weight matrices of SAM ViT-B for SVD or
SALT costs nothing. The model is built by the code a cell trains with
(cell_model.build_cell_model), so the count is the count of what a cell trains.

Three percentages are reported. `pct_model` divides by the segmentation model (image encoder,
prompt encoder, mask decoder, TAL, adapters), as every cell summary does. `pct_with_text` adds
the frozen text encoder, as the official SALT code counts (CLIP ViT-B/32 is a submodule of its
model). `pct_of_paper_total` divides by the total the paper prints in the table's group header
(241M for Table 1): the paper's own percentages are consistent with that fixed denominator, not
with one that grows with the adapters (docs/accounting.md).
"""
from __future__ import annotations

import copy
import csv
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import yaml

from benchmark.config import validate
from benchmark.cost.parameters import count_parameters
from benchmark.grid import entry_id, expand_cells
from benchmark.models.cell_model import ENCODER, build_cell_model
from benchmark.io import write_text
from benchmark.models import sam2
from benchmark.models.text import encoder_parameters
from benchmark.paper.published import GROUP_TOTAL_M, PublishedRow, half_unit, published

PAPER_FILE = Path(__file__).resolve().parent / "paper_accounting.yaml"
# The published table each backbone's rows are compared with (SAM ViT-B with SAM's own weights).
TABLES = {"sam_vit_b": "table1", **{arch: "sam2" for arch in sam2.ARCHS}}
PLACEHOLDER_DATASET = {"kind": "synthetic", "modality": "bright_speckle", "n_train": 1, "n_test": 1}
COLUMNS = (
    "table", "published_row", "backbone", "method", "note", "spec", "trainable", "adapter", "extra", "total",
    "text_encoder", "pct_model", "pct_with_text", "pct_of_paper_total", "published_m", "published_pct", "delta_m",
    "delta_rel_pct", "delta_pct_points", "count_matches_print", "pct_matches_print",
)
SLACK = 1e-9  # float noise in the comparisons with a printed value


@dataclass
class Count:
    """One backbone x method: what it trains, out of what, and the published row it answers."""

    backbone: str
    method: str
    spec: str
    trainable: int
    extra: int  # trainable parameters outside adapters (TAL, norms, positional embedding)
    total: int
    text_encoder: int
    row: PublishedRow | None
    note: str = ""
    encoder: int = 0  # trainable parameters inside the image encoder (adapters included)

    @property
    def pct_model(self) -> float:
        return 100.0 * self.trainable / self.total

    @property
    def pct_with_text(self) -> float:
        return 100.0 * self.trainable / (self.total + self.text_encoder)

    @property
    def pct_of_paper_total(self) -> float | None:
        return 100.0 * self.trainable / (GROUP_TOTAL_M[self.row.table] * 1e6) if self.row else None

    def record(self) -> dict[str, object]:
        """A CSV row. Deltas are ours minus published: in millions, relative to the published
        count, and in percentage points against the paper's fixed total. *_matches_print: ours
        would print as the paper prints (within half a unit of its last printed digit)."""
        row = self.row
        published_m = row.trainable_m if row else None
        published_pct = row.trainable_pct if row else None
        paper_pct = self.pct_of_paper_total
        return {
            "table": row.table if row else "",
            "published_row": row.row if row else "",
            "backbone": self.backbone,
            "method": self.method,
            "note": self.note,
            "spec": self.spec,
            "trainable": self.trainable,
            "adapter": self.trainable - self.extra,
            "extra": self.extra,
            "total": self.total,
            "text_encoder": self.text_encoder,
            "pct_model": round(self.pct_model, 3),
            "pct_with_text": round(self.pct_with_text, 3),
            "pct_of_paper_total": "" if paper_pct is None else round(paper_pct, 3),
            "published_m": "" if published_m is None else published_m,
            "published_pct": "" if published_pct is None else published_pct,
            "delta_m": "" if published_m is None else round(self.trainable / 1e6 - published_m, 3),
            "delta_rel_pct": "" if published_m is None else round(100.0 * (self.trainable / 1e6 / published_m - 1), 1),
            "delta_pct_points": "" if published_pct is None else round(paper_pct - published_pct, 3),
            "count_matches_print": "" if published_m is None else
            abs(self.trainable / 1e6 - published_m) <= half_unit(row.printed_m) + SLACK,
            "pct_matches_print": "" if published_pct is None else
            abs(paper_pct - published_pct) <= half_unit(row.printed_pct) + SLACK,
        }


@cache
def _text_encoder_parameters(encoder: str) -> int:
    return encoder_parameters(encoder)


def _spec(entry: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("id", "label"))


def _published_row(backbone_cfg: dict, entry: dict, table_row: str | None) -> PublishedRow | None:
    """An explicit "table/row", or the row whose id is the entry's id in the backbone's table."""
    if table_row:
        table, row = table_row.split("/")
        return published(table, row)
    table = TABLES.get(backbone_cfg["name"]) if backbone_cfg["variant"] == "sam" else None
    try:
        return published(table, entry_id(entry)) if table else None
    except KeyError:
        return None


def count_grid(config: dict, published_rows: dict[str, str] | None = None) -> list[Count]:
    """Count every backbone x method of a validated grid (baselines are not SAM-based: skipped).

    Weights (the text encoder's too) are forced to random; published_rows maps an entry id to an explicit "table/row".
    """
    config = copy.deepcopy(config)
    for backbone in config["backbones"].values():
        backbone["weights"] = "random"
        if backbone.get("text_checkpoint"):  # CLIP's weights change no count: a grid counts before any download
            backbone["text_checkpoint"] = "random"
    first = (config["seeds"][0], next(iter(config["datasets"])))
    counts = []
    for cell in expand_cells(config).values():
        if cell.backbone is None or (cell.seed, cell.dataset) != first:
            continue
        with torch.device("meta"):
            built = build_cell_model(cell, config)
        trainable, total = count_parameters(built.model)
        params = dict(built.model.named_parameters())
        backbone_cfg = config["backbones"][cell.backbone]
        method = entry_id(cell.entry)
        counts.append(Count(
            backbone=cell.backbone,
            method=method,
            spec=_spec(cell.entry),
            trainable=trainable,
            extra=sum(params[name].numel() for name in built.extra_trainable),
            total=total,
            text_encoder=_text_encoder_parameters(backbone_cfg["text_encoder"]),
            row=_published_row(backbone_cfg, cell.entry, (published_rows or {}).get(method)),
            encoder=sum(p.numel() for name, p in params.items() if p.requires_grad and name.startswith(ENCODER)),
        ))
    return counts


def paper_grid(data: dict, backbone: str, method: dict, results_dir: Path) -> dict:
    """A validated one-cell grid: `backbone` of paper_accounting.yaml (`data`) at its input size
    with random weights, adapted as `method`; what counting parameters or GFLOPs builds."""
    return validate({
        "name": "paper-accounting",
        "results_dir": str(results_dir),
        "input_size": data["input_size"],
        "datasets": {"placeholder": PLACEHOLDER_DATASET},
        "train": {},
        "backbones": {backbone: {**data["backbones"][backbone], "weights": "random"}},
        "methods": [method],
    }, check_paths=False)  # random weights: no checkpoint needs to exist


def count_paper(path: Path = PAPER_FILE, results_dir: Path = Path("results")) -> list[Count]:
    """The reconstructed configurations of the paper's rows (paper_accounting.yaml), one per row;
    text embeddings are cached under results_dir/cache as a cell's are."""
    data = yaml.safe_load(Path(path).read_text())
    counts = []
    for row in data["rows"]:
        grid = paper_grid(data, row["backbone"], row["method"], results_dir)
        [count] = count_grid(grid, {entry_id(row["method"]): row["published"]})
        count.note = row["note"]
        counts.append(count)
    return counts


def to_csv(counts: list[Count]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(count.record() for count in counts)
    return buffer.getvalue()


def to_markdown(counts: list[Count]) -> str:
    header = ("published row", "backbone", "method", "trainable", "% model", "% with text enc.",
              "% of paper total", "published", "delta (count / pp)", "prints as published (count / %)", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for count in counts:
        r = count.record()
        where = f"{r['table']}/{r['published_row']}" if count.row else ""
        published_text = delta = matches = ""
        if count.row and count.row.trainable_m is not None:
            has_pct = r["published_pct"] != ""
            published_text = f"{r['published_m']}M" + (f" / {r['published_pct']}%" if has_pct else "")
            delta = f"{r['delta_rel_pct']:+}%" + (f" / {r['delta_pct_points']:+} pp" if has_pct else "")
            matches = _yes(r["count_matches_print"]) + (f" / {_yes(r['pct_matches_print'])}" if has_pct else "")
        paper_pct = f"{r['pct_of_paper_total']}%" if count.row else ""
        cells = (where, count.backbone, count.method, f"{count.trainable / 1e6:.3f}M", f"{r['pct_model']}%",
                 f"{r['pct_with_text']}%", paper_pct, published_text, delta, matches, count.note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


def write_accounting(counts: list[Count], out: Path) -> Path:
    """params.csv (every column) and params.md (the readable table) under `out`; the CSV path."""
    write_text(out / "params.csv", to_csv(counts))
    write_text(out / "params.md", to_markdown(counts))
    return out / "params.csv"
