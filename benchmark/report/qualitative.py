"""The paper's Fig. 3 from the cells' kept predictions: per dataset, one test image (the one of
median Dice under the dataset's best row) with its input, its ground truth and every row's
prediction coloured against the ground truth. Nothing is re-run: predictions come from each
cell's predictions.npz, images and masks from the dataset cache the cells decoded."""
from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import load_image, split_pairs
from benchmark.data.sources import load_pairs
from benchmark.predictions import PREDICTIONS, read_predictions
from benchmark.report.pictures import LINE_SPACING, fitted, provenance_caption, save_png, text_height
from benchmark.report.rows import distinct, is_oracle, on_dataset, row_label, seed_stats, table_order

TRUE_POSITIVE, FALSE_NEGATIVE, FALSE_POSITIVE = (1.0, 1.0, 1.0), (0.9, 0.1, 0.1), (0.0, 0.8, 1.0)
NOT_RUN = (0.85, 0.85, 0.85)
RULE = ("per dataset, the test image of median Dice (lower median, ties by id) under the row with the best "
        "mean test Dice, seed {seed}")
PANEL_INCHES = 1.9


def overlay(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB in [0, 1]: true positives white, false negatives red, false positives cyan, the rest black."""
    rgb = np.zeros((*truth.shape, 3))
    rgb[prediction & truth] = TRUE_POSITIVE
    rgb[~prediction & truth] = FALSE_NEGATIVE
    rgb[prediction & ~truth] = FALSE_POSITIVE
    return rgb


def _per_image_dice(cell_dir: Path) -> dict[str, float]:
    with (cell_dir / "per_image.csv").open() as handle:
        return {row["id"]: float(row["dice"]) for row in csv.DictReader(handle)}


def _wrapped(text: str) -> str:
    """Lines short enough for one panel's width (labels like "Synthetic dark (fundus/X-ray-like)")."""
    return "\n".join(textwrap.wrap(text, 18, break_on_hyphens=False, break_long_words=False))


def median_image(per_image: dict[str, float]) -> str:
    """The id of median Dice; with an even count the lower of the two middle images, ties by id."""
    ranked = sorted(per_image, key=lambda image_id: (per_image[image_id], image_id))
    return ranked[(len(ranked) - 1) // 2]


def _test_image(config: dict, dataset: str, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, boolean ground truth) of a test image at the resolution its metrics used:
    the network input (resized and padded, from the cells' decode cache) or the image's own size."""
    results = Path(config["results_dir"])
    pairs = split_pairs(load_pairs(dataset, config["datasets"][dataset], results), "test")
    test = VesselDataset(pairs, config["input_size"], cache_dir=results / "cache" / "data")
    index = [pair.id for pair in pairs].index(image_id)
    if config["train"]["metrics_resolution"] == "native":
        return load_image(pairs[index].image), test.native_mask(index) > 0
    return test.images[index], test.masks[index]


def _rankable(means: dict[str, float | None], rows: dict[str, list[dict]]) -> list[str]:
    """The rows the "best row" is chosen among: those with a Dice, prompt-free ones (no oracle prompt
    built from the ground truth) when there are any, so an oracle row never wins against them."""
    scored = [key for key in means if means[key] is not None]
    free = [key for key in scored if not is_oracle(rows[key][0])]
    return free or scored


def qualitative_figure(config: dict, summaries: list[dict]) -> Figure:
    """The figure (not saved): one line of panels per dataset; columns input, ground truth, then the
    rows of Table 1 in its order. A row that did not run on a dataset gets a grey panel saying so."""
    cells_dir = Path(config["results_dir"]) / "cells"
    rows = table_order(summaries)
    # whole training sets only: a training subset's column tests the same images (train_size.png has them)
    datasets = {s["dataset"]["name"]: s["dataset"]["label"] for s in summaries if s["dataset"].get("n_train_subset") is None}
    seed = min(s["seed"] for s in summaries)
    several = len({s["backbone"] for s in summaries if s["method"]["group"] != "baseline"}) > 1
    titles = ["input", "ground truth"] + [row_label(cells[0], several) for cells in rows.values()]

    columns = len(titles)
    fig = Figure(figsize=(PANEL_INCHES * columns + 0.6, PANEL_INCHES * 1.35 * len(datasets) + 1.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(datasets), columns, squeeze=False)
    for line, (dataset, label) in enumerate(datasets.items()):
        means = {key: seed_stats([c["metrics"]["dice_mean"] for c in on_dataset(cells, dataset)])[0]
                 for key, cells in rows.items()}
        best = max(_rankable(means, rows), key=lambda key: means[key])
        seed_cells = {key: [c for c in on_dataset(cells, dataset) if c["seed"] == seed] for key, cells in rows.items()}
        image_id = median_image(_per_image_dice(cells_dir / seed_cells[best][0]["cell"]))
        image, truth = _test_image(config, dataset, image_id)
        panels = axes[line]
        panels[0].imshow(image)
        panels[0].set_ylabel(_wrapped(label) + f"\n{image_id}", fontsize=9)
        panels[1].imshow(truth, cmap="gray", vmin=0, vmax=1)
        for panel, (key, cells) in zip(panels[2:], seed_cells.items()):
            if not cells:
                panel.imshow(np.ones((*truth.shape, 3)) * NOT_RUN)
                panel.text(0.5, 0.5, "not run on\n" + _wrapped(label), ha="center", va="center", fontsize=8,
                           transform=panel.transAxes)
                continue
            cell_dir = cells_dir / cells[0]["cell"]
            prediction = read_predictions(cell_dir / PREDICTIONS)[image_id]
            panel.imshow(overlay(prediction, truth), interpolation="antialiased")
            best_mark = " (best row)" if key == best else ""
            panel.set_xlabel(f"Dice {_per_image_dice(cell_dir)[image_id]:.3f}{best_mark}", fontsize=8)
        for column, panel in enumerate(panels):
            panel.set_xticks([])
            panel.set_yticks([])
            if line == 0:
                panel.set_title(_wrapped(titles[column]), fontsize=8)

    title = fitted(fig, f"Test predictions against the ground truth (grid {config.get('name', 'grid')}): "
                   + RULE.format(seed=seed), 9)
    fig.suptitle(title, fontsize=9)
    caption = provenance_caption(fig, distinct([s["weights"] for s in summaries]),
                                 distinct([s["dataset"]["data"] for s in summaries]))
    wide = fig.get_figwidth() >= 7.5  # the three entries side by side need about 7 inches
    fig.legend(handles=[Patch(facecolor=TRUE_POSITIVE, edgecolor="black", label="true positive"),
                        Patch(facecolor=FALSE_NEGATIVE, label="false negative (missed vessel)"),
                        Patch(facecolor=FALSE_POSITIVE, label="false positive")],
               loc="lower center", ncols=3 if wide else 1, fontsize=8, frameon=False, bbox_to_anchor=(0.5, caption))
    legend = (1 if wide else 3) * 8 * LINE_SPACING * 1.4 / 72 / fig.get_figheight()
    fig.tight_layout(rect=(0.0, caption + legend, 1.0, 1.0 - text_height(fig, title, 9) - 0.01))
    return fig


def write_qualitative(config: dict, summaries: list[dict], out_dir: Path) -> Path:
    return save_png(qualitative_figure(config, summaries), Path(out_dir) / "qualitative.png", dpi=150)
