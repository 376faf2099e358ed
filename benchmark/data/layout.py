"""The SALT dataset layout (``images/``, ``masks/``, ``data_split.csv``), read and checked up front.

Every dataset, real or synthetic, ends up in this layout, so one reader and one validator serve all;
problems surface before training starts, with the offending file named.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.errors import DatasetError

SPLITS = ("train", "val", "test")
_SPLIT_COLUMNS = ("imgs", "split")
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Pair:
    """One image and its vessel mask, with the split it belongs to; `fov` is the field-of-view mask
    where the publisher ships one (DRIVE), carried for checks and analyses, not used by the metrics."""

    id: str
    image: Path
    mask: Path
    split: str
    fov: Path | None = None


def split_pairs(pairs: list[Pair], split: str) -> list[Pair]:
    """The pairs of one split, in their original order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return [pair for pair in pairs if pair.split == split]


def read_salt_layout(root: Path) -> list[Pair]:
    """List the image/mask pairs of `root` in csv order; files are checked to exist, not opened."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a directory")
    images_dir, masks_dir, csv_path = root / "images", root / "masks", root / "data_split.csv"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DatasetError(f"dataset folder {folder} is missing")
    if not csv_path.is_file():
        raise DatasetError(f"split file {csv_path} is missing")
    masks_by_stem: dict[str, list[Path]] = {}
    for path in sorted(masks_dir.iterdir()):
        if path.is_file():
            masks_by_stem.setdefault(path.stem, []).append(path)
    pairs: list[Pair] = []
    seen: dict[str, int] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        if any(column not in columns for column in _SPLIT_COLUMNS):
            raise DatasetError(f"{csv_path} must have columns {','.join(_SPLIT_COLUMNS)}; found {columns}")
        reader.fieldnames = columns
        for line, row in enumerate(reader, start=2):
            name, split = (row["imgs"] or "").strip(), (row["split"] or "").strip()
            where = f"{csv_path} line {line}"
            if not name:
                raise DatasetError(f"{where}: empty image name")
            if split not in SPLITS:
                raise DatasetError(f"{where}: unknown split {split!r} for {name}; allowed: {', '.join(SPLITS)}")
            image = images_dir / name
            if not image.is_file():
                raise DatasetError(f"{where}: image {image} is missing")
            pair_id = image.stem
            if pair_id in seen:
                raise DatasetError(f"{where}: image id {pair_id!r} is listed again (first on line {seen[pair_id]})")
            seen[pair_id] = line
            pairs.append(Pair(pair_id, image, _find_mask(masks_dir / name, masks_by_stem), split))
    return pairs


def _find_mask(expected: Path, masks_by_stem: dict[str, list[Path]]) -> Path:
    """Same file name as the image, else the only mask with the same stem (image .jpg, mask .png)."""
    if expected.is_file():
        return expected
    candidates = masks_by_stem.get(expected.stem, [])
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"mask {expected} is missing (no file with stem {expected.stem!r} in {expected.parent})")
    raise DatasetError(f"mask for {expected.name} is ambiguous: {', '.join(str(c) for c in candidates)}")


SHOWN_PROBLEMS = 20


def validate_pairs(pairs: list[Pair], required_splits: tuple[str, ...] = ("train", "test")) -> None:
    """Open every pair once, before any training time is spent, and report every unusable one in
    one DatasetError (the first SHOWN_PROBLEMS named, the rest counted): fixing one file and
    re-running to find the next would cost a run per file."""
    where = f"dataset {pairs[0].image.parent.parent}" if pairs else "an empty pair list"
    problems = [f"split {split!r} of {where} has no images" for split in required_splits
                if not any(pair.split == split for pair in pairs)]
    for pair in pairs:
        problems += _pair_problems(pair)
    if len(problems) == 1:
        raise DatasetError(problems[0])
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems[:SHOWN_PROBLEMS])
        more = len(problems) - SHOWN_PROBLEMS
        raise DatasetError(f"{len(problems)} problems in {where}:\n{lines}" + (f"\n  ... and {more} more" if more > 0 else ""))


def _pair_problems(pair: Pair) -> list[str]:
    """What is wrong with one image / mask (/ field-of-view) triple; empty when it is usable."""
    problems = []
    image_size = _attempt(_image_size, pair.image, problems)
    for path, kind in ((pair.mask, "mask"), (pair.fov, "field-of-view mask")):
        if path is None:
            continue
        values = _attempt(_mask_values, path, problems)
        if values is None:
            continue
        if image_size is not None and values.shape != image_size:
            problems.append(f"size mismatch: image {pair.image} is {image_size[0]}x{image_size[1]} (HxW) but "
                            f"{kind} {path} is {values.shape[0]}x{values.shape[1]}")
        _attempt(_check_binary, path, problems, values)
    return problems


def _attempt(check, path: Path, problems: list[str], *args):
    """check(path, *args), or None with its DatasetError's message added to problems."""
    try:
        return check(path, *args)
    except DatasetError as error:
        problems.append(str(error))
        return None


def _check_binary(path: Path, values: np.ndarray) -> None:
    distinct = np.unique(values)
    if len(distinct) > 2 or (len(distinct) > 0 and distinct[0] != 0):
        shown = ", ".join(str(v) for v in distinct[:10]) + (", ..." if len(distinct) > 10 else "")
        raise DatasetError(
            f"mask {path} is not binary: {len(distinct)} distinct values ({shown}); "
            "a mask needs at most two values, one of them 0"
        )


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            image.load()
            return image.height, image.width
    except _PIL_ERRORS as error:
        raise DatasetError(f"image {path} is unreadable: {error}") from error


def _mask_values(path: Path) -> np.ndarray:
    """Mask pixels as H x W values; colour masks reduce to the channel maximum, alpha is ignored.

    Palette images (DRIVE's GIFs) are converted to grey first: their raw values are palette indices,
    and index 0 need not be black.
    """
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                image = image.convert("L")
            if image.mode in ("RGBA", "LA"):
                image = image.convert(image.mode[:-1])
            values = np.asarray(image)
    except _PIL_ERRORS as error:
        raise DatasetError(f"mask {path} is unreadable: {error}") from error
    return values.max(axis=2) if values.ndim == 3 else values


def load_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8: grayscale is repeated, alpha dropped, 16-bit scaled to 8-bit."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I;16"):
                gray = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            if image.mode in ("I", "F"):
                gray = np.asarray(image, dtype=np.float64)
                span = gray.max() - gray.min()
                gray = np.round((gray - gray.min()) / (span if span > 0 else 1) * 255).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            return np.asarray(image.convert("RGB"))
    except _PIL_ERRORS as error:
        raise DatasetError(f"image {path} is unreadable: {error}") from error


def load_mask(path: Path) -> np.ndarray:
    """H x W bool, any value > 0 is vessel."""
    return _mask_values(path) > 0
