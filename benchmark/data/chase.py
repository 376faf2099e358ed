"""CHASE_DB1 (Fraz et al. 2012), retinal fundus, flat as in ``CHASEDB1.zip``: ``Image_NNL.jpg`` /
``Image_NNR.jpg`` (both eyes of 14 children) with ``Image_NNX_1stHO.png`` (first observer, the
reference by convention) and ``Image_NNX_2ndHO.png`` (second observer).

The SALT paper does not use CHASE_DB1; saltbench uses it as the real dataset it can test on. Its
split is the one common in the literature: patients 01-10 train (20 images), 11-14 test (8); both
eyes of a patient always share a split, the validation subset included.
"""
from __future__ import annotations

import re
from pathlib import Path

from benchmark.data.layout import Pair

from benchmark.data.splits import Item, resolve
from benchmark.errors import DatasetError

PAPER = None  # the paper has no CHASE_DB1 split: `paper` means the literature split
N_TRAIN_PATIENTS = 10
_IMAGE = re.compile(r"^Image_(\d+)([LR])\.jpg$")


def scan(root: Path) -> list[Item]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"CHASE_DB1 folder {root} does not exist")
    items = []
    for image in sorted(root.iterdir(), key=lambda path: path.name):
        match = _IMAGE.match(image.name)
        if not match:
            continue
        mask, second = (root / f"{image.stem}_{observer}HO.png" for observer in ("1st", "2nd"))
        if not mask.is_file():
            raise DatasetError(f"CHASE_DB1 mask {mask} is missing for {image}")
        patient = match.group(1)
        items.append(Item(
            id=image.stem,
            image=image,
            mask=mask,
            official="train" if int(patient) <= N_TRAIN_PATIENTS else "test",
            group=patient,
            second_mask=second if second.is_file() else None,
        ))
    return items


def pairs(root: Path, split_file: Path | None = None, *, split: str = "paper", seed: int = 0,
          validation: bool = False, observer: int = 1) -> list[Pair]:
    """`paper` and `official` both name the literature split (the paper has none for CHASE_DB1)."""
    return resolve(scan(root), root=Path(root), tag="chase_db1", split=split, paper=PAPER, split_file=split_file,
                   seed=seed, validation=validation, observer=observer)
