"""figures/ablation_bubble.png (Fig. 4a): x labels from the method entries, one point per PEFT row
and dataset, bubble area proportional to % trainable, published points overlaid. The figure object
is inspected, not its pixels."""
from __future__ import annotations

import pytest

from benchmark.report.ablation import ablation_figure, rank_label, write_ablation_bubble
from tests.test_report_fixtures import METHODS, make_grid, populate


def _method(entry: dict, label: str) -> dict:
    return {"rank": None, **entry, "label": label, "group": "peft"}


@pytest.mark.parametrize(("entry", "label", "expected"), [
    ({"id": "lora_r4", "name": "lora", "rank": 4}, "LoRA", "LoRA 4"),
    ({"id": "svd", "name": "svd"}, "S-SAM", "S-SAM"),
    ({"id": "salt_r4", "name": "salt", "rank": 4}, "SALT", "LoRA 4 / MHA 50% / MLP 50%"),  # registry defaults
    (METHODS[3], "SALT", "LoRA 256 / MHA 64 / MLP 64 / Neck 8"),
    ({**METHODS[3], "sv_ranks": {"attn.qkv": 200, "attn.proj": 200, "mlp": 200}}, "SALT",
     "LoRA 256 / MHA 200 / MLP 200 / Neck 8"),  # Fig. 4a's optimum
    ({"id": "s", "name": "salt", "rank": 64, "sv_rank": 0.1, "targets": ["attn.qkv", "attn.proj"],
      "sv_ranks": {"attn.proj": 20}}, "SALT", "LoRA 64 / QKV 10% / Proj 20"),
])
def test_rank_label(entry, label, expected):
    assert rank_label(_method(entry, label)) == expected


def _ours(fig) -> dict[str, int]:
    ax = fig.axes[0]
    return {c.get_gid(): len(c.get_offsets()) for c in ax.collections if (c.get_gid() or "").startswith("ours:")}


def test_one_point_per_peft_row_and_dataset(tmp_path):
    config = make_grid(tmp_path)
    summaries = populate(config)
    fig = ablation_figure(config, summaries)
    peft_rows = {s["method"]["id"] for s in summaries if s["method"]["group"] == "peft"}
    assert len(peft_rows) == 3
    assert _ours(fig) == {"ours:bright": len(peft_rows), "ours:dark": len(peft_rows)}
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "LoRA 4", "LoRA 4 / MHA 50% / MLP 50%", "LoRA 256 / MHA 64 / MLP 64 / Neck 8"]
    bright = next(c for c in ax.collections if c.get_gid() == "ours:bright")
    sizes = bright.get_sizes()  # area proportional to % trainable: 1.5, 0.46, 5.84
    assert sizes[0] / sizes[2] == pytest.approx(1.5 / 5.84) and sizes[1] / sizes[2] == pytest.approx(0.46 / 5.84)
    assert bright.get_offsets()[2][1] == pytest.approx(sum([0.8 + 0.01 * i * (-1) ** i for i in range(7)]) / 7 + 0.0025)
    assert not [c for c in ax.collections if c.get_gid() == "published"]
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "Weights: litemedsam pretrained (test weights)." in caption and "SYNTHETIC bright (test fixture)" in caption


def test_published_ablation_points_are_overlaid_hollow(tmp_path):
    config = make_grid(tmp_path, paper={"datasets": {"dark": "DRIVE"},
                                        "rows": {"litemedsam/salt_r256": "ablation/salt_lora_r256_sv200",
                                                 "litemedsam/salt_r4": "table1/salt_r4"}})
    fig = ablation_figure(config, populate(config))
    [published] = [c for c in fig.axes[0].collections if c.get_gid() == "published"]
    assert len(published.get_offsets()) == 1  # table1/* rows are not ablation points
    x, y = published.get_offsets()[0]
    assert y == 0.76 and x == pytest.approx(2 + 0.06)  # salt_r256's position, shifted as the DRIVE dataset is
    assert published.get_facecolors().size == 0 or published.get_facecolors()[0][3] == 0  # hollow


def test_png_is_written(tmp_path):
    config = make_grid(tmp_path)
    path = write_ablation_bubble(config, populate(config), tmp_path / "out")
    assert path.name == "ablation_bubble.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob(".*tmp"))


def test_grid_without_peft_rows_still_plots(tmp_path):
    config = make_grid(tmp_path, methods=[{"id": "frozen", "name": "frozen"}])
    fig = ablation_figure(config, populate(config))
    assert _ours(fig) == {"ours:bright": 0, "ours:dark": 0}
    assert any("no PEFT rows" in t.get_text() for t in fig.axes[0].texts)
