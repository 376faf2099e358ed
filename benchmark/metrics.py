"""Per-image Dice and HD95 on binary masks, computed with MONAI, plus their per-cell summary.

Published HD95 numbers differ by convention (MONAI gives NaN when exactly one mask is empty, the
official SALT code gives inf, medpy pools both directions), so the conventions used here are
constants that every summary and every table note quote verbatim.
"""

import math
import warnings

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

DICE_CONVENTION = (
    "Dice = 2|P∩G|/(|P|+|G|) per image (MONAI compute_dice, ignore_empty=False); "
    "both masks empty -> 1.0; exactly one empty -> 0.0."
)
HD95_CONVENTION = (
    "HD95 = symmetric 95th-percentile Hausdorff distance as MONAI 1.6.1 computes it "
    "(compute_hausdorff_distance, percentile=95, directed=False: the max of the two directed "
    "95th percentiles of Euclidean distances between mask boundary pixels), in pixels of the "
    "evaluated resolution; both masks empty -> 0.0; exactly one empty -> undefined (NaN), "
    "excluded from the HD95 mean and std and counted as hd95_undefined."
)


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    """Reject anything but two same-shape 2-D bool masks: thresholding is the caller's decision."""
    for name, mask in (("pred", pred), ("gt", gt)):
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 2:
            kind = f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
            raise ValueError(f"{name} must be a 2-D bool numpy array, got {kind}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")


def _as_batch(mask: np.ndarray) -> torch.Tensor:
    """MONAI expects (batch, channel, H, W) one-hot tensors."""
    return torch.from_numpy(mask)[None, None].float()


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice per DICE_CONVENTION."""
    _check(pred, gt)
    value = compute_dice(_as_batch(pred), _as_batch(gt), include_background=True, ignore_empty=False)
    return float(value.item())


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """HD95 per HD95_CONVENTION; empty masks are decided here so MONAI never sees them."""
    _check(pred, gt)
    pred_empty, gt_empty = not pred.any(), not gt.any()
    if pred_empty and gt_empty:
        return 0.0
    if pred_empty or gt_empty:
        return math.nan
    with warnings.catch_warnings():
        # MONAI 1.6.1 warns about its own internal use of a deprecated get_mask_edges argument.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
        value = compute_hausdorff_distance(
            _as_batch(pred), _as_batch(gt), include_background=True, percentile=95, directed=False
        )
    return float(value.item())


def score(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Both metrics of one image, keyed as the per-image CSV columns."""
    return {"dice": dice(pred, gt), "hd95": hd95(pred, gt)}


def summarise(per_image: list[dict]) -> dict:
    """Mean and population std (ddof=0: the test set is the whole population) over images.

    HD95 statistics use defined values only; undefined ones are counted in hd95_undefined so
    that a low HD95 mean cannot hide failed images.
    """
    dices = np.array([float(row["dice"]) for row in per_image], dtype=float)
    hds = np.array([float(row["hd95"]) for row in per_image], dtype=float)
    defined = hds[~np.isnan(hds)]

    def stats(values: np.ndarray) -> tuple[float, float]:
        if values.size == 0:
            return math.nan, math.nan
        return float(values.mean()), float(values.std(ddof=0))

    dice_mean, dice_std = stats(dices)
    hd95_mean, hd95_std = stats(defined)
    return {
        "dice_mean": dice_mean,
        "dice_std": dice_std,
        "hd95_mean": hd95_mean,
        "hd95_std": hd95_std,
        "n_images": len(per_image),
        "hd95_undefined": int(hds.size - defined.size),
    }
