"""What every figure of the report shares: the weights and data line under it, and an atomic PNG write."""
from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from benchmark.io import atomic_write


def provenance_caption(fig: Figure, weights: str, data: str | None, width: int, fontsize: float = 6.0) -> None:
    """'Weights: ...' (and 'Data: ...') at the figure's bottom left, wrapped at `width` characters:
    a figure read alone still says what its numbers were measured on."""
    lines = [textwrap.fill(f"Weights: {weights}.", width)]
    if data is not None:
        lines.append(textwrap.fill(f"Data: {data}.", width))
    fig.text(0.01, 0.005, "\n".join(lines), ha="left", va="bottom", fontsize=fontsize)


def save_png(fig: Figure, path: Path, dpi: int) -> Path:
    """The figure as a PNG, written atomically (a killed run leaves no half picture)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return Path(path)
