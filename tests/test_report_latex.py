"""LaTeX escaping and the booktabs layout, on their own."""
from __future__ import annotations

import pytest

from benchmark.report.latex import booktabs, escape


@pytest.mark.parametrize(("text", "expected"), [
    ("50% / 1.5M", r"50\% / 1.5M"),
    ("lite_medsam.pth", r"lite\_medsam.pth"),
    ("A & B # $5 {x}", r"A \& B \# \$5 \{x\}"),
    ("a\\b", r"a\textbackslash{}b"),
    ("~^", r"\textasciitilde{}\textasciicircum{}"),
    ("0.71 ± 0.01", r"0.71 $\pm$ 0.01"),
    ("–", "--"),
    ("2|P∩G|", r"2|P$\cap$G|"),
    (0.5, "0.5"),
])
def test_escape(text, expected):
    assert escape(text) == expected


def test_escape_does_not_escape_its_own_output():
    assert escape(escape("%")) == r"\textbackslash{}\%"


def test_booktabs_groups_and_width_check():
    tex = booktabs(["A", "B_1"], [("G 1", [["x", "1%"]]), ("G 2", [["y", "2"], ["z", "3"]])], "cap & x", "tab:t")
    lines = tex.splitlines()
    assert lines[lines.index(r"\toprule") + 1] == r"A & B\_1 \\"
    assert lines.count(r"\midrule") == 2
    assert lines[lines.index(r"\multicolumn{2}{l}{\textbf{G 1}} \\") - 1] == r"\midrule"
    assert r"x & 1\% \\" in lines and r"\caption{cap \& x}" in lines and r"\label{tab:t}" in lines
    with pytest.raises(ValueError, match="a row has 1 cells, the header 2"):
        booktabs(["A", "B"], [("G", [["only one"]])], "c", "l")
