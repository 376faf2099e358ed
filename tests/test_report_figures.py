"""Fig. 3 (qualitative.png) and the training curves: colours on hand-made masks, the stated image
rule, every row's own kept prediction in its column, grey panels for rows a dataset did not run,
and one loss line per trained row."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.predictions import read_predictions
from benchmark.grid import Cell, entry_id
from benchmark.report.curves import curves_figure
from benchmark.report.qualitative import (FALSE_NEGATIVE, FALSE_POSITIVE, TRUE_POSITIVE, median_image, overlay,
                                          qualitative_figure)
from tests.test_report_fixtures import IMAGES, default_dice, make_grid, populate


def test_overlay_colours_each_outcome():
    prediction = np.array([[1, 1], [0, 0]], dtype=bool)
    truth = np.array([[1, 0], [1, 0]], dtype=bool)
    rgb = overlay(prediction, truth)
    assert tuple(rgb[0, 0]) == TRUE_POSITIVE == (1.0, 1.0, 1.0)
    assert tuple(rgb[0, 1]) == FALSE_POSITIVE and tuple(rgb[1, 0]) == FALSE_NEGATIVE
    assert tuple(rgb[1, 1]) == (0.0, 0.0, 0.0)
    assert len({TRUE_POSITIVE, FALSE_NEGATIVE, FALSE_POSITIVE, (0.0, 0.0, 0.0)}) == 4


def test_median_image_is_the_lower_median_ties_by_id():
    assert median_image({"a": 0.3, "b": 0.1, "c": 0.2, "d": 0.4}) == "c"
    assert median_image({"a": 0.3, "b": 0.1, "c": 0.2}) == "c"
    assert median_image({"z": 0.5, "y": 0.5, "x": 0.5}) == "y"


BEST_ON_BRIGHT = [0.9, 0.95, 0.85, 0.99, 0.8, 0.7, 0.6]  # sorted: .6 .7 .8 .85 .9 .95 .99: median .85, IMAGES[2]


def _dice(cell: Cell) -> list[float]:
    """SALT r256 is the best row; on bright its median image is IMAGES[2], not the default pattern's IMAGES[0]."""
    if entry_id(cell.entry) == "salt_r256" and cell.dataset == "bright":
        return BEST_ON_BRIGHT
    return default_dice(cell)


def test_figure_shows_the_best_rows_median_image_and_each_rows_prediction(tmp_path):
    config = make_grid(tmp_path, backbones={"litemedsam": {"name": "litemedsam", "datasets": ["bright"]}})
    summaries = populate(config, _dice)
    fig = qualitative_figure(config, summaries)
    titles = ["input", "ground truth", "U-Net", "LiteMedSAM (zero-shot)", "LoRA r4", "SALT r4", "SALT r256"]
    columns = len(titles)
    panels = fig.axes[: 2 * columns]
    assert [p.get_title().replace("\n", " ") for p in panels[:columns]] == titles
    assert panels[0].get_ylabel() == f"Bright\n{IMAGES[2]}"
    assert panels[columns].get_ylabel() == f"Dark\n{IMAGES[0]}"  # only U-Net ran on dark
    assert panels[6].get_xlabel() == f"Dice {BEST_ON_BRIGHT[2]:.3f} (best row)"
    truth = panels[1].images[0].get_array().astype(bool)
    cells = Path(config["results_dir"]) / "cells"
    lora = read_predictions(cells / "litemedsam-lora_r4-bright-s0" / "predictions.npz")[IMAGES[2]]
    assert np.array_equal(panels[4].images[0].get_array(), overlay(lora, truth))
    for panel in panels[columns + 3:]:  # the LiteMedSAM rows on dark
        assert [t.get_text() for t in panel.texts] == ["not run on\nDark"]


def test_curves_have_one_loss_line_per_trained_row_and_say_when_nothing_is_validated(tmp_path):
    config = make_grid(tmp_path)
    summaries = populate(config)
    fig = curves_figure(config, summaries)
    loss, dice = fig.axes[0], fig.axes[1]
    assert [line.get_label() for line in loss.get_lines()] == ["U-Net", "LoRA r4", "SALT r4", "SALT r256"]
    assert list(loss.get_lines()[0].get_ydata()) == [1.0, 0.5]  # 1 / epoch in the fixture logs
    assert dice.get_lines()[0].get_label() == "U-Net" and not dice.texts
    last = make_grid(tmp_path, train={"epochs": 2, "selection": "last"})
    fig = curves_figure(last, summaries)
    assert not fig.axes[1].get_lines() and "train.selection: last" in fig.axes[1].texts[0].get_text()


def test_a_narrow_figure_keeps_its_title_caption_and_key_inside_and_apart(tmp_path):
    """One PEFT row (four panel columns): the title and the caption wrap to the figure's width, and
    the colour key sits above the caption, not on it."""
    config = make_grid(tmp_path, baselines=[], methods=[{"name": "lora", "rank": 4}])
    fig = qualitative_figure(config, populate(config))
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width
    title, caption = fig._suptitle, fig.texts[-1]
    assert caption.get_text().startswith("Weights:")
    for text in (title, caption):
        box = text.get_window_extent(renderer)
        assert 0 <= box.x0 and box.x1 <= width, text.get_text()[:40]
    key = fig.legends[0].get_window_extent(renderer)
    assert key.y0 >= caption.get_window_extent(renderer).y1  # above the caption
    assert all(key.y1 <= panel.get_position().y0 * fig.bbox.height for panel in fig.axes)  # below the panels
