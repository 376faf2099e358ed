"""Our trainable counts next to peft-sam's (Teuber, Archit and Pape, MIDL 2025), row by row.

peft-sam trains SAM's mask decoder and prompt encoder in every row besides the method's encoder
parameters, and counts the whole model; this suite's rows train the TAL (and, where the backbone
config says so, norms) instead of the decoder. So a row is compared on what the method trains
inside the image encoder: ours (Count.encoder) plus the decoder and prompt encoder, counted as
peft-sam counts, against the total they print. Their numbers, and which ones they state rather
than we derive from their code, are data: peft_sam_counts.yaml.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmark.cost.paper_params import SLACK, Count
from benchmark.io import write_text
from benchmark.paper.published import half_unit

FILE = Path(__file__).resolve().parent / "peft_sam_counts.yaml"
DECODER_AND_PROMPT = 4_058_340 + 6_220  # SAM ViT-B's mask decoder and prompt encoder (segment-anything)
COLUMNS = ("row", "peft_sam_row", "trainable_here", "encoder_ours", "encoder_theirs", "as_peft_sam_counts_m",
           "peft_sam_m", "stated", "matches_print", "delta_encoder", "source", "note")


@dataclass(frozen=True)
class PeftSamRow:
    """One peft-sam row: its label, total as printed, whether printed or derived, its encoder share."""

    label: str
    total_m: str
    stated: bool
    source: str
    encoder: int
    note: str


def load_rows(path: Path = FILE) -> dict[str, PeftSamRow]:
    return {row: PeftSamRow(**fields) for row, fields in yaml.safe_load(path.read_text()).items()}


def compare(counts: list[Count], rows: dict[str, PeftSamRow] | None = None) -> list[dict]:
    """A record per counted row that peft-sam has; rows of the grid they lack are left out."""
    rows = load_rows() if rows is None else rows
    records = []
    for count in counts:
        theirs = rows.get(count.method)
        if theirs is None:
            continue
        as_theirs = (count.encoder + DECODER_AND_PROMPT) / 1e6
        records.append({
            "row": count.method, "peft_sam_row": theirs.label, "trainable_here": count.trainable,
            "encoder_ours": count.encoder, "encoder_theirs": theirs.encoder,
            "as_peft_sam_counts_m": round(as_theirs, 3), "peft_sam_m": theirs.total_m,
            "stated": "stated" if theirs.stated else "derived from their code",
            "matches_print": abs(as_theirs - float(theirs.total_m)) <= half_unit(theirs.total_m) + SLACK,
            "delta_encoder": count.encoder - theirs.encoder, "source": theirs.source, "note": theirs.note,
        })
    return records


def to_markdown(records: list[dict]) -> str:
    header = ("row", "peft-sam row", "trains here", "encoder: ours", "encoder: peft-sam", "ours as peft-sam counts",
              "peft-sam", "their number is", "prints as theirs", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        cells = (r["row"], r["peft_sam_row"], f"{r['trainable_here'] / 1e6:.3f}M", f"{r['encoder_ours']:,}",
                 f"{r['encoder_theirs']:,}", f"{r['as_peft_sam_counts_m']:.3f}M", f"{r['peft_sam_m']}M", r["stated"],
                 "yes" if r["matches_print"] else "no", r["note"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(records: list[dict], out: Path) -> Path:
    """peft_sam_params.csv and .md under `out`; the CSV path."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(records)
    write_text(out / "peft_sam_params.csv", buffer.getvalue())
    write_text(out / "peft_sam_params.md", to_markdown(records))
    return out / "peft_sam_params.csv"
