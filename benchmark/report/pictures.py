"""What every figure of the report shares: the weights and data line under it, and an atomic PNG write."""
from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from benchmark.io import atomic_write


LINE_SPACING = 1.3  # a text line's height in units of its font size


def fitted(fig: Figure, text: str, fontsize: float, share: float = 0.98) -> str:
    """`text` wrapped to `share` of the figure's width at `fontsize` (an average glyph is about 0.55 em
    wide), so a title or caption is never cut at the figure's edge, whatever the grid's width."""
    chars = max(30, int(share * fig.get_figwidth() * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(paragraph, chars) for paragraph in text.split("\n"))


def text_height(fig: Figure, text: str, fontsize: float) -> float:
    """The height of `text` (its lines at `fontsize`) as a fraction of the figure's height."""
    return (text.count("\n") + 1) * fontsize * LINE_SPACING / 72 / fig.get_figheight()


def provenance_caption(fig: Figure, weights: str, data: str | None, fontsize: float = 6.0) -> float:
    """'Weights: ...' (and 'Data: ...') at the figure's bottom left, wrapped to the figure's width: a
    figure read alone still says what its numbers were measured on. Returns the caption's height
    as a fraction of the figure's, for the layout to keep clear."""
    lines = [f"Weights: {weights}."] + ([] if data is None else [f"Data: {data}."])
    text = fitted(fig, "\n".join(lines), fontsize)
    fig.text(0.01, 0.005, text, ha="left", va="bottom", fontsize=fontsize)
    return text_height(fig, text, fontsize) + 0.01


def save_png(fig: Figure, path: Path, dpi: int) -> Path:
    """The figure as a PNG, written atomically (a killed run leaves no half picture), cropped to what
    is drawn, legends placed beside the axes included."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1))
    return Path(path)
