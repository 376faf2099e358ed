"""ROSE (Ma et al. 2021), OCT-angiography, as released: ``ROSE-1/{SVC,DVC,SVC_DVC}/{train,test}/{img,gt}``
and ``ROSE-2/{train,test}/{original,gt}``; an image and its mask share a file stem.

`subset` picks one of the four image sets. The paper's 22/8 split (30 images, ROSE-1's training set
size) is drawn from the official training images of the subset.
"""
from __future__ import annotations

from pathlib import Path

from benchmark.data.layout import Pair

from benchmark.data.splits import Item, PaperSplit, resolve
from benchmark.errors import DatasetError

PAPER = PaperSplit(n_train=22, n_test=8, pool=("train",))
SUBSETS = {
    "SVC": (Path("ROSE-1/SVC"), "img"),
    "DVC": (Path("ROSE-1/DVC"), "img"),
    "SVC_DVC": (Path("ROSE-1/SVC_DVC"), "img"),
    "ROSE-2": (Path("ROSE-2"), "original"),
}


def tag(subset: str) -> str:
    """Split-file name of a subset: rose_svc, rose_dvc, rose_svc_dvc, rose_rose-2."""
    return f"rose_{subset.lower()}"


def scan(root: Path, subset: str = "SVC") -> list[Item]:
    if subset not in SUBSETS:
        raise ValueError(f"unknown ROSE subset {subset!r}; allowed: {', '.join(SUBSETS)}")
    root = Path(root)
    folder, image_dir = SUBSETS[subset]
    items = []
    for official in ("train", "test"):
        images, masks = root / folder / official / image_dir, root / folder / official / "gt"
        for directory in (images, masks):
            if not directory.is_dir():
                raise DatasetError(f"ROSE folder {directory} is missing (root {root} should hold {folder.parts[0]}/)")
        by_stem = {path.stem: path for path in masks.iterdir() if path.is_file()}
        for image in sorted(path for path in images.iterdir() if path.is_file()):
            if image.stem not in by_stem:
                raise DatasetError(f"ROSE mask for {image} is missing (no file with stem {image.stem!r} in {masks})")
            items.append(Item(id=f"{official}_{image.stem}", image=image, mask=by_stem[image.stem], official=official))
    return items


def pairs(root: Path, split_file: Path | None = None, *, subset: str = "SVC", split: str = "paper", seed: int = 0,
          validation: bool = False) -> list[Pair]:
    return resolve(scan(root, subset), root=Path(root), tag=tag(subset), split=split, paper=PAPER,
                   split_file=split_file, seed=seed, validation=validation)
