"""A cell's test predictions kept losslessly: one compressed .npz per cell holding every test image's
binary mask bit-packed at the resolution its metrics were computed at, so that the qualitative
figure (the paper's Fig. 3) and any later analysis need neither the model nor a GPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.io import atomic_write

PREDICTIONS = "predictions.npz"


def write_predictions(path: Path, masks: dict[str, np.ndarray]) -> None:
    """Write {image id: 2-D mask} atomically; a mask is stored as `mask != 0`, 1 bit per pixel
    (np.packbits along rows, deflated), its shape beside it."""
    ids = list(masks)
    arrays: dict[str, np.ndarray] = {"ids": np.array(ids, dtype=str), "shapes": np.zeros((len(ids), 2), dtype=np.int64)}
    for index, image_id in enumerate(ids):
        mask = np.asarray(masks[image_id]) != 0
        if mask.ndim != 2:
            raise ValueError(f"prediction of {image_id!r} must be a 2-D mask, got shape {mask.shape}")
        arrays["shapes"][index] = mask.shape
        arrays[f"bits_{index}"] = np.packbits(mask, axis=1)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file object: given a path, numpy would append ".npz" to it
            np.savez_compressed(handle, **arrays)

    atomic_write(path, write)


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """{image id: boolean mask} in the order written; KeyError/ValueError for a file of another shape."""
    with np.load(Path(path), allow_pickle=False) as data:
        ids, shapes = data["ids"].tolist(), data["shapes"]
        return {image_id: np.unpackbits(data[f"bits_{index}"], axis=1, count=int(shapes[index][1])).astype(bool)
                for index, image_id in enumerate(ids)}
