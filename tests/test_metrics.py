"""Dice, HD95 and their summary against hand-made masks with known answers."""

import math

import numpy as np
import pytest

from benchmark.metrics import dice, hd95, score, summarise


def blank() -> np.ndarray:
    return np.zeros((16, 16), dtype=bool)


def square(row: int, col: int, size: int) -> np.ndarray:
    mask = blank()
    mask[row : row + size, col : col + size] = True
    return mask


def test_identical_masks():
    mask = square(3, 3, 5)
    assert score(mask, mask) == {"dice": 1.0, "hd95": 0.0}


def test_single_pixels_offset_by_k():
    pred, gt = blank(), blank()
    pred[5, 2] = True
    gt[5, 9] = True
    assert dice(pred, gt) == 0.0
    assert hd95(pred, gt) == pytest.approx(7.0)


def test_vertical_lines_offset_by_k_every_surface_point_at_k():
    pred, gt = blank(), blank()
    pred[1:9, 2] = True
    gt[1:9, 6] = True
    assert hd95(pred, gt) == pytest.approx(4.0)
    assert hd95(gt, pred) == pytest.approx(4.0)


def test_diagonal_offset_is_euclidean():
    pred, gt = blank(), blank()
    pred[2, 2] = True
    gt[5, 6] = True
    assert hd95(pred, gt) == pytest.approx(5.0)


def test_symmetric_is_max_of_directed_percentiles():
    # pred -> gt: the one pred pixel lies on gt, distance 0.
    # gt -> pred: distances [0, 10]; linear 95th percentile = 0 + 0.95 * 10 = 9.5.
    pred, gt = blank(), blank()
    pred[2, 2] = True
    gt[2, 2] = True
    gt[2, 12] = True
    assert hd95(pred, gt) == pytest.approx(9.5)
    assert hd95(gt, pred) == pytest.approx(9.5)


def test_half_overlap():
    # Two 4x4 squares shifted by 2 columns: |P∩G| = 8, Dice = 16 / 32.
    # Boundary distances from either square's edge to the other's are four 0s, four 1s and
    # four 2s, so the 95th percentile is 2.
    pred, gt = square(4, 4, 4), square(4, 6, 4)
    assert dice(pred, gt) == pytest.approx(0.5)
    assert hd95(pred, gt) == pytest.approx(2.0)


def test_dice_formula_on_unequal_sizes():
    pred, gt = square(0, 0, 4), square(0, 0, 2)
    assert dice(pred, gt) == pytest.approx(2 * 4 / (16 + 4))


def test_empty_prediction_nonempty_gt():
    result = score(blank(), square(2, 2, 3))
    assert result["dice"] == 0.0
    assert math.isnan(result["hd95"])


def test_nonempty_prediction_empty_gt():
    result = score(square(2, 2, 3), blank())
    assert result["dice"] == 0.0
    assert math.isnan(result["hd95"])


def test_both_empty():
    assert score(blank(), blank()) == {"dice": 1.0, "hd95": 0.0}


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (np.zeros((4, 4), dtype=np.uint8), np.zeros((4, 4), dtype=bool), "pred must be a 2-D bool"),
        (np.zeros((4, 4), dtype=bool), np.zeros((1, 4, 4), dtype=bool), "gt must be a 2-D bool"),
        (np.zeros((4, 4), dtype=bool), np.zeros((4, 5), dtype=bool), "shapes differ"),
    ],
)
def test_bad_input_is_named(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        score(pred, gt)


def test_summarise_excludes_and_counts_undefined_hd95():
    rows = [
        {"dice": 1.0, "hd95": 0.0},
        {"dice": 0.5, "hd95": 4.0},
        {"dice": 0.0, "hd95": math.nan},
        {"dice": 0.75, "hd95": 8.0},
    ]
    summary = summarise(rows)
    assert summary["n_images"] == 4
    assert summary["hd95_undefined"] == 1
    assert summary["dice_mean"] == pytest.approx(0.5625)
    assert summary["dice_std"] == pytest.approx(np.std([1.0, 0.5, 0.0, 0.75]))
    assert summary["hd95_mean"] == pytest.approx(4.0)
    assert summary["hd95_std"] == pytest.approx(np.std([0.0, 4.0, 8.0]))
    assert all(type(summary[key]) is float for key in ("dice_mean", "dice_std", "hd95_mean", "hd95_std"))


def test_summarise_all_undefined_hd95():
    summary = summarise([{"dice": 0.0, "hd95": math.nan}, {"dice": 0.0, "hd95": math.nan}])
    assert summary["hd95_undefined"] == 2
    assert math.isnan(summary["hd95_mean"])
    assert math.isnan(summary["hd95_std"])
    assert summary["dice_mean"] == 0.0
