"""The Dice-against-cost figure: one point per row on each panel, the Pareto front, the published
points where the grid maps rows, and the memory axis naming what it shows."""
from __future__ import annotations

import pytest

from benchmark.report.pareto import pareto_figure, pareto_front, points, write_pareto
from tests.test_report_fixtures import make_grid, measured, populate

PAPER = {"datasets": {"bright": "DRIVE", "dark": "ROSE"},
         "rows": {"unet": "table1/unet", "litemedsam/salt_r4": "table1/salt_r4", "litemedsam/lora_r4": "sam2/lora_r4"}}


def test_front_keeps_only_points_no_other_beats_on_both_axes():
    xy = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (5.0, 0.7), (10.0, 0.9), (0.5, float("nan"))]
    # (2, 0.4) is beaten by (1, 0.5); (5, 0.7) costs more than (2, 0.7) for the same Dice
    assert pareto_front(xy) == [0, 2, 4]
    assert pareto_front([(3.0, 0.6), (3.0, 0.6)]) == [0, 1]  # ties dominate nothing


def _gids(fig) -> list[dict[str, int]]:
    return [{gid: sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == gid) for gid in ("ours", "published")}
            for ax in fig.axes]


def test_one_point_per_row_on_both_panels_with_the_published_ones(tmp_path):
    config = make_grid(tmp_path, paper=PAPER)
    summaries = populate(config)
    fig = pareto_figure(config, summaries)
    # 5 rows (U-Net, zero-shot, LoRA, SALT r4, SALT r256); published: U-Net and SALT r4 (Table 1), LoRA (SAM2 table)
    assert _gids(fig) == [{"ours": 5, "published": 3}, {"ours": 5, "published": 0}]
    left, right = fig.axes
    assert "host peak RSS" in right.get_xlabel() and "% trainable" in left.get_xlabel()
    salt = next(p for p in points(summaries)[0] if p.key == "litemedsam/salt_r4")
    assert salt.pct == pytest.approx(0.46) and salt.memory == pytest.approx(1050.0)
    assert write_pareto(config, summaries, tmp_path / "out").stat().st_size > 10_000


def test_accelerator_memory_is_used_when_every_row_measured_it(tmp_path):
    config = make_grid(tmp_path)
    summaries = populate(config)
    for summary in summaries:
        summary["measured"] = {**measured(summary["method"]["id"], summary["seed"], device="cuda: Test GPU"),
                               "peak_reserved_mb": 2000.0 + summary["seed"]}
    ours, accelerator = points(summaries)
    assert accelerator and {p.memory for p in ours} == {2000.5}
    assert "accelerator peak reserved" in pareto_figure(config, summaries).axes[1].get_xlabel()


def test_the_percent_axis_has_ticks_even_within_one_decade():
    from benchmark.report.pareto import percent_ticks

    assert percent_ticks((1.1, 2.4), [1.2, 2.3]) == [1.2, 2.0, 2.3]  # only 2 falls on 1-2-5: ends added
    assert percent_ticks((0.0, 120.0), [0.02, 100.0]) == [0.0, 0.1, 1.0, 10.0, 100.0]  # wide: decades only
    assert percent_ticks((0.3, 4.0), [0.4, 3.5]) == [0.5, 1.0, 2.0]


def test_an_oracle_row_is_plotted_and_named_but_never_on_a_front(tmp_path):
    """A zero-shot row prompted with the ground-truth box at Dice 0.99 would dominate every row at 0%
    trainable; it is not prompt-free, so the fronts are drawn without it."""
    config = make_grid(tmp_path, paper=PAPER)
    oracle = {"mode": "box", "box": "mask", "jitter": 0, "positive": 0, "negative": 0, "oracle": True,
              "description": "ground-truth box (oracle)"}
    summaries = []
    for summary in populate(config):
        if summary["method"]["group"] == "zero-shot":
            summary = {**summary, "prompt": oracle, "metrics": {**summary["metrics"], "dice_mean": 0.99}}
        summaries.append(summary)
    zero_shot = next(p for p in points(summaries)[0] if p.oracle)
    assert "[ground-truth box (oracle)]" in zero_shot.label and zero_shot.dice == pytest.approx(0.99)
    left, right = pareto_figure(config, summaries).axes
    fronts = [line for ax in (left, right) for line in ax.lines if line.get_linestyle() == "--"]
    assert fronts and all(0.99 not in list(line.get_ydata()) for line in fronts)
    assert _gids(pareto_figure(config, summaries))[0]["ours"] == 5  # still plotted
