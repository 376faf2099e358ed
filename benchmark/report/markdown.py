"""Markdown tables: one place that escapes cell text, so every report file renders the same way."""
from __future__ import annotations

import math
from typing import Iterable, Sequence


def row(cells: Iterable[object]) -> str:
    """A table line; '|' inside a cell would end the cell, so it is escaped."""
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Header, rule and one line per row."""
    return [row(columns), "|" + "|".join("---" for _ in columns) + "|", *(row(cells) for cells in rows)]


def number(value: object, spec: str) -> str:
    """A formatted number, or a dash where there is none (None, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)
