"""LaTeX output: escaping and booktabs tables, kept apart from what the tables contain."""
from __future__ import annotations

import re
from typing import Sequence

# LaTeX specials first (backslash before the others so their escapes are not escaped again), then
# the few non-ASCII characters the tables print, as math or dashes that every engine understands.
_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
    "∝": r"$\propto$",
    "σ": r"$\sigma$",
    "Δ": r"$\Delta$",
    "∩": r"$\cap$",
}
_PATTERN = re.compile("|".join(re.escape(char) for char in _SPECIALS))


def escape(text: object) -> str:
    """Text that LaTeX typesets as written."""
    return _PATTERN.sub(lambda match: _SPECIALS[match.group(0)], str(text))


def booktabs(columns: Sequence[str], groups: Sequence[tuple[str, Sequence[Sequence[object]]]],
             caption: str, label: str) -> str:
    """A table environment: \\toprule, header, then per group a \\midrule and a \\multicolumn title
    row followed by its rows, \\bottomrule. Every cell, title and the caption are escaped."""
    width = len(columns)
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{'l' * width}}}",
        r"\toprule",
        " & ".join(escape(column) for column in columns) + r" \\",
    ]
    for title, rows in groups:
        lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textbf{{{escape(title)}}}}} \\")
        for cells in rows:
            if len(cells) != width:
                raise ValueError(f"a row has {len(cells)} cells, the header {width}: {list(cells)}")
            lines.append(" & ".join(escape(cell) for cell in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
