"""What every report figure shares: the provenance line under it and how it is written."""
from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from benchmark.io import atomic_write


def provenance_caption(fig: Figure, weights: str, data: str, width: int = 160) -> None:
    """Weights and data of the plotted cells, small, at the figure's bottom left."""
    caption = textwrap.fill(f"Weights: {weights}.", width) + "\n" + textwrap.fill(f"Data: {data}.", width)
    fig.text(0.01, 0.01, caption, ha="left", va="bottom", fontsize=7)


def write_png(fig: Figure, path: Path) -> Path:
    """The figure as a 150 dpi PNG, written atomically."""
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=150))
    return Path(path)
