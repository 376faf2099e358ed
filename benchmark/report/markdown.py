"""Markdown tables and prose: one place that escapes cell text and wraps paragraphs, so every report
file renders the same way and reads in a 120-column terminal."""
from __future__ import annotations

import math
import textwrap
from typing import Iterable, Sequence

WIDTH = 120  # columns a report's markdown is written for: its tables' lines and its wrapped prose


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


def paragraph(text: str) -> str:
    """Prose wrapped at WIDTH (markdown joins the lines again); a word longer than that, a path or
    a commit hash, stays whole."""
    return textwrap.fill(" ".join(text.split()), WIDTH, break_long_words=False, break_on_hyphens=False)


def item(text: str) -> str:
    """A list item, wrapped at WIDTH under its own first word."""
    return textwrap.fill(" ".join(text.split()), WIDTH, initial_indent="- ", subsequent_indent="  ",
                         break_long_words=False, break_on_hyphens=False)


def footnotes(texts: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """A marker per distinct non-empty text ([1], [2], ...) for the table's cells, and the wrapped
    paragraphs that spell each out once under the table: a sentence in a cell widens every line."""
    markers = {text: f"[{index}]" for index, text in enumerate(dict.fromkeys(t for t in texts if t), 1)}
    return markers, [paragraph(f"{marker} {text}") for text, marker in markers.items()]
