"""XRay-Angio: the DCA1 coronary angiogram database (Cervantes-Sanchez et al. 2019) as it unpacks,
``Database_134_Angiograms/`` with ``N.pgm`` and its vessel mask ``N_gt.pgm`` (N = 1..134).

It has no official split; the paper's 93/41 is drawn from all 134 images.
"""
from __future__ import annotations

import re
from pathlib import Path

from benchmark.data.layout import Pair

from benchmark.data.splits import Item, PaperSplit, resolve
from benchmark.errors import DatasetError

PAPER = PaperSplit(n_train=93, n_test=41, pool=None)
FOLDER = "Database_134_Angiograms"
_IMAGE = re.compile(r"^(\d+)\.pgm$")


def scan(root: Path) -> list[Item]:
    """`root` is the unpacked folder itself or the folder that holds it."""
    root = Path(root)
    folder = root / FOLDER if (root / FOLDER).is_dir() else root
    if not folder.is_dir():
        raise DatasetError(f"XRay-Angio folder {folder} is missing")
    items = []
    for image in sorted(folder.iterdir(), key=lambda path: path.name):
        match = _IMAGE.match(image.name)
        if not match:
            continue
        mask = folder / f"{match.group(1)}_gt.pgm"
        if not mask.is_file():
            raise DatasetError(f"XRay-Angio mask {mask} is missing for {image}")
        items.append(Item(id=f"{int(match.group(1)):03d}", image=image, mask=mask))
    return items


def pairs(root: Path, split_file: Path | None = None, *, split: str = "paper", seed: int = 0,
          validation: bool = False) -> list[Pair]:
    return resolve(scan(root), root=Path(root), tag="xray_angio", split=split, paper=PAPER,
                   split_file=split_file, seed=seed, validation=validation)
