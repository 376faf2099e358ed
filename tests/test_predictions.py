"""Kept predictions read back bit for bit, whatever their shape, and a failed write leaves no file."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.predictions import read_predictions, write_predictions


def test_masks_read_back_exactly_at_any_shape(tmp_path):
    rng = np.random.default_rng(0)
    masks = {"Image_11L": rng.random((7, 13)) > 0.5, "a b/c": np.zeros((1, 1), dtype=bool),
             "wide": rng.random((3, 64)) > 0.3, "uint8": (rng.random((9, 9)) > 0.5).astype(np.uint8) * 255}
    path = tmp_path / "predictions.npz"
    write_predictions(path, masks)
    back = read_predictions(path)
    assert list(back) == list(masks)
    for key, mask in masks.items():
        assert back[key].dtype == bool and np.array_equal(back[key], mask != 0), key
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.npz"]


def test_a_mask_that_is_not_2d_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="'x' must be a 2-D mask"):
        write_predictions(tmp_path / "predictions.npz", {"ok": np.ones((2, 2)), "x": np.ones((1, 2, 2))})
    assert list(tmp_path.iterdir()) == []


def test_bit_packing_keeps_the_file_small(tmp_path):
    """1 bit per pixel before deflate: a 512 x 512 noise mask (incompressible) takes about 32 KiB, not 256."""
    mask = np.random.default_rng(1).random((512, 512)) > 0.5
    write_predictions(tmp_path / "p.npz", {"noise": mask})
    assert (tmp_path / "p.npz").stat().st_size < 40_000
