"""A grid's `paper` section: which of its rows and datasets answer which published numbers
(checked against the grid and benchmark/paper/published.py when the config is validated)."""
from __future__ import annotations


def paper_section(config: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(dataset key -> paper column, row key -> "<table>/<row>"); empty when the grid maps nothing."""
    paper = config.get("paper") or {}
    return dict(paper.get("datasets") or {}), dict(paper.get("rows") or {})
