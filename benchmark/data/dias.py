"""DIAS (Liu et al. 2024), intracranial DSA sequences, in the layout its authors' code reads:
``{training,validation,test}/images/image_s<S>_i<F>.png`` (frame F of sequence S) and
``{training,validation,test}/labels/label_s<S>.png`` (one vessel mask per sequence).

The paper segments 2-D images and does not say how a sequence becomes one; saltbench uses the
minimum-intensity projection over its frames (contrast-filled vessels are dark in DSA), as the DIAS
authors' ``data_process/MIP.py`` does. The projection is written once into the cache folder; a split
file checksums the frames themselves. The paper's 20/10 split is drawn from all labelled sequences.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.data.layout import Pair, load_image

from benchmark.data.splits import Derived, Item, PaperSplit, resolve, sha256_file
from benchmark.errors import DatasetError
from benchmark.io import atomic_write

PAPER = PaperSplit(n_train=20, n_test=10, pool=None)
FOLDERS = {"training": "train", "validation": "val", "test": "test"}
_LABEL = re.compile(r"^label_s(\d+)\.png$")
_FRAME = re.compile(r"^image_s(\d+)_i(\d+)\.png$")


def _project(frames: list[Path], path: Path) -> None:
    stack = [load_image(frame) for frame in frames]
    for frame, image in zip(frames[1:], stack[1:]):
        if image.shape != stack[0].shape:
            raise DatasetError(f"DIAS frame {frame} is {image.shape[:2]} but {frames[0]} is {stack[0].shape[:2]}")
    projection = np.min(np.stack(stack), axis=0)
    atomic_write(path, lambda tmp: Image.fromarray(projection).save(tmp, format="PNG"))


def scan(root: Path, cache_dir: Path) -> list[Item]:
    """Every labelled sequence; its projection is written into `cache_dir` unless already there."""
    root, cache_dir = Path(root), Path(cache_dir)
    if not (root / "training").is_dir():
        raise DatasetError(f"DIAS folder {root / 'training'} is missing (root {root} should hold training/, validation/, test/)")
    items = []
    for folder, official in FOLDERS.items():
        images, labels = root / folder / "images", root / folder / "labels"
        if not (root / folder).is_dir():
            continue
        for directory in (images, labels):
            if not directory.is_dir():
                raise DatasetError(f"DIAS folder {directory} is missing")
        frames: dict[str, list[tuple[int, Path]]] = {}
        for path in images.iterdir():
            match = _FRAME.match(path.name)
            if match:
                frames.setdefault(match.group(1), []).append((int(match.group(2)), path))
        for label in sorted(labels.iterdir(), key=lambda path: path.name):
            match = _LABEL.match(label.name)
            if not match:
                continue
            sequence = [path for _, path in sorted(frames.get(match.group(1), []))]
            if not sequence:
                raise DatasetError(f"DIAS frames image_s{match.group(1)}_i*.png for {label} are missing in {images}")
            digest = hashlib.sha256("".join(sha256_file(frame) for frame in sequence).encode()).hexdigest()
            projection = cache_dir / f"{folder}_s{match.group(1)}-{digest[:16]}.png"
            if not projection.is_file():
                _project(sequence, projection)
            items.append(Item(
                id=f"{official}_s{int(match.group(1)):03d}",
                image=projection,
                mask=label,
                official=official,
                image_derived=Derived(f"{len(sequence)} frames {images}/image_s{match.group(1)}_i*.png", digest),
            ))
    return items


def pairs(root: Path, split_file: Path | None = None, *, cache_dir: Path, split: str = "paper", seed: int = 0,
          validation: bool = False) -> list[Pair]:
    return resolve(scan(root, cache_dir), root=Path(root), tag="dias", split=split, paper=PAPER,
                   split_file=split_file, seed=seed, validation=validation)
