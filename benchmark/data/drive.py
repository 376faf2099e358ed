"""DRIVE (Staal et al. 2004) as released: ``training/`` and ``test/``, each with ``images/NN_<folder>.tif``,
``1st_manual/NN_manual1.gif`` (vessels), ``mask/NN_<folder>_mask.gif`` (field of view), and
``test/2nd_manual/NN_manual2.gif`` (a second observer) where present.

The paper's 14/6 split is drawn from the 20 annotated training images; the official split is 20/20
and needs ``test/1st_manual`` (some redistributions leave the test annotations out).
"""
from __future__ import annotations

from pathlib import Path

from benchmark.data.layout import Pair

from benchmark.data.splits import Item, PaperSplit, resolve
from benchmark.errors import DatasetError

PAPER = PaperSplit(n_train=14, n_test=6, pool=("train",))
FOLDERS = {"train": "training", "test": "test"}


def _required(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"DRIVE file {path} is missing")
    return path


def scan(root: Path) -> list[Item]:
    """Every annotated DRIVE image; test images only where ``test/1st_manual`` exists."""
    root = Path(root)
    items = []
    for official, folder in FOLDERS.items():
        base = root / folder
        if official == "test" and not (base / "1st_manual").is_dir():
            continue
        if not (base / "images").is_dir():
            raise DatasetError(f"DRIVE folder {base / 'images'} is missing (root {root} should hold training/ and test/)")
        for image in sorted((base / "images").glob("*.tif")):
            number = image.stem.split("_")[0]
            second = base / "2nd_manual" / f"{number}_manual2.gif"
            items.append(Item(
                id=image.stem,
                image=image,
                mask=_required(base / "1st_manual" / f"{number}_manual1.gif"),
                official=official,
                fov=_required(base / "mask" / f"{image.stem}_mask.gif"),
                second_mask=second if second.is_file() else None,
            ))
    return items


def pairs(root: Path, split_file: Path | None = None, *, split: str = "paper", seed: int = 0,
          validation: bool = False, observer: int = 1) -> list[Pair]:
    return resolve(scan(root), root=Path(root), tag="drive", split=split, paper=PAPER, split_file=split_file,
                   seed=seed, validation=validation, observer=observer)
