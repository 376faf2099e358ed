"""Fixed, checksummed train/val/test splits for datasets read in their publishers' layouts.

A split file (``benchmark/data/splits/<dataset>_<split>.csv``) lists every image the split uses, the
split it belongs to and the SHA-256 of its image and mask, so a run on a changed or incomplete copy
of a dataset stops before training with the offending files named. Without a split file the split
is drawn from the ids alone (seeded hash order, no library random stream), so it is the same on
every machine, but then nothing can be verified, and a warning says so.
"""
from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.layout import SPLITS, Pair
from benchmark.errors import DatasetError


SPLIT_DIR = Path(__file__).resolve().parent / "splits"
COLUMNS = ("id", "split", "image_sha256", "mask_sha256")
VAL_FRACTION = 0.15  # of the train images, at least one, kept aside for model selection
SPLIT_MODES = ("paper", "official")
_MAX_LISTED = 20


@dataclass(frozen=True)
class Derived:
    """A file saltbench wrote from publisher data (a rendered mask, a projected sequence):
    what it was made from, and the SHA-256 of those sources, which is what a split file records."""

    sources: str
    sha256: str


@dataclass(frozen=True)
class Item:
    """One annotated image as its publisher ships it, before a split is chosen.

    `official` is the publisher's split (train/val/test), None where it has none. Items that share a
    `group` (the two eyes of one patient) always land in the same split. `second_mask` is a second
    observer's annotation, where the dataset has one.
    """

    id: str
    image: Path
    mask: Path
    official: str | None = None
    group: str | None = None
    fov: Path | None = None
    second_mask: Path | None = None
    image_derived: Derived | None = None
    mask_derived: Derived | None = None


@dataclass(frozen=True)
class PaperSplit:
    """The paper's split sizes, drawn from the images whose official split is in `pool` (None: all)."""

    n_train: int
    n_test: int
    pool: tuple[str, ...] | None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    return digest.hexdigest()


def checksums(item: Item) -> tuple[str, str]:
    """SHA-256 of the item's image and mask as the publisher ships them."""
    image = item.image_derived.sha256 if item.image_derived else sha256_file(item.image)
    mask = item.mask_derived.sha256 if item.mask_derived else sha256_file(item.mask)
    return image, mask


def _describe(item: Item, part: str) -> str:
    derived = item.image_derived if part == "image" else item.mask_derived
    return derived.sources if derived else str(item.image if part == "image" else item.mask)


def _hash_order(keys: list[str], seed: int, stage: str) -> list[str]:
    """A seeded shuffle that depends only on the keys: stable across numpy/python versions."""
    return sorted(keys, key=lambda key: hashlib.sha256(f"{seed}/{stage}/{key}".encode()).hexdigest())


def _take(items: list[Item], count: int, seed: int, stage: str) -> tuple[list[Item], list[Item]]:
    """Whole groups in seeded order until at least `count` items are taken; (taken, rest)."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.group or item.id, []).append(item)
    taken: list[Item] = []
    rest: list[Item] = []
    for key in _hash_order(list(groups), seed, stage):
        (taken if len(taken) < count else rest).extend(groups[key])
    return taken, rest


def _carve_val(assignment: dict[str, str], items: list[Item], seed: int) -> None:
    train = [item for item in items if assignment.get(item.id) == "train"]
    val, _ = _take(train, max(1, round(VAL_FRACTION * len(train))), seed, "val")
    if len(val) == len(train):
        raise DatasetError(f"cannot carve a validation subset from {len(train)} training image(s)")
    assignment.update({item.id: "val" for item in val})


def draw(items: list[Item], split: str, paper: PaperSplit | None, seed: int) -> dict[str, str]:
    """id -> train/val/test. `paper` draws the paper's sizes (None: the official split is the paper's);
    `official` keeps the publisher's split. Validation is carved from train unless the publisher has one."""
    if split not in SPLIT_MODES:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLIT_MODES)}")
    items = sorted(items, key=lambda item: item.id)
    if split == "official" or paper is None:
        assignment = {item.id: item.official for item in items if item.official}
        if not assignment:
            raise DatasetError("this dataset has no official split; use split: paper")
        if "val" not in assignment.values():
            _carve_val(assignment, items, seed)
        return assignment
    pool = [item for item in items if paper.pool is None or item.official in paper.pool]
    need = paper.n_train + paper.n_test
    if len(pool) < need:
        where = f"official {'/'.join(paper.pool)} split" if paper.pool else "dataset"
        raise DatasetError(
            f"the paper's split needs {paper.n_train} train + {paper.n_test} test images but the {where} "
            f"has {len(pool)}"
        )
    test, rest = _take(pool, paper.n_test, seed, "test")
    train, _ = _take(rest, paper.n_train, seed, "train")
    assignment = {item.id: "test" for item in test} | {item.id: "train" for item in train}
    _carve_val(assignment, items, seed)
    return assignment


def default_split_file(tag: str, split: str) -> Path:
    """Where the repository keeps the split file of dataset `tag` (e.g. drive, rose_svc)."""
    return SPLIT_DIR / f"{tag}_{split}.csv"


def read_split_file(path: Path) -> dict[str, tuple[str, str, str]]:
    """id -> (split, image_sha256, mask_sha256); lines starting with # are comments."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file {path} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise DatasetError(f"{path} must have the columns {','.join(COLUMNS)}; found {reader.fieldnames}")
    rows: dict[str, tuple[str, str, str]] = {}
    for row in reader:
        if row["split"] not in SPLITS:
            raise DatasetError(f"{path}: unknown split {row['split']!r} for {row['id']}; allowed: {', '.join(SPLITS)}")
        if row["id"] in rows:
            raise DatasetError(f"{path}: id {row['id']!r} is listed twice")
        rows[row["id"]] = (row["split"], row["image_sha256"], row["mask_sha256"])
    if not rows:
        raise DatasetError(f"split file {path} lists no images")
    return rows


def verify(items: list[Item], rows: dict[str, tuple[str, str, str]], path: Path, root: Path) -> dict[str, str]:
    """id -> split of a split file, after checking every listed file; all problems are reported at once."""
    by_id = {item.id: item for item in items}
    problems = []
    for item_id, (_, image_sha, mask_sha) in rows.items():
        item = by_id.get(item_id)
        if item is None:
            problems.append(f"{item_id}: listed in the split file but its files are missing under {root}")
            continue
        found = checksums(item)
        for part, expected, actual in (("image", image_sha, found[0]), ("mask", mask_sha, found[1])):
            if expected != actual:
                problems.append(
                    f"{item_id}: {part} {_describe(item, part)} changed "
                    f"(sha256 {actual[:12]}..., split file has {expected[:12]}...)"
                )
    if problems:
        shown = problems[:_MAX_LISTED] + ([f"... and {len(problems) - _MAX_LISTED} more"] if len(problems) > _MAX_LISTED else [])
        raise DatasetError(
            f"the data under {root} does not match split file {path} ({len(problems)} problem(s)):\n  "
            + "\n  ".join(shown)
        )
    return {item_id: split for item_id, (split, _, _) in rows.items()}


def split_file_text(items: list[Item], assignment: dict[str, str], comment: str) -> str:
    """The split file for `assignment`, with checksums of every listed item, in id order."""
    buffer = io.StringIO()
    for line in comment.splitlines():
        buffer.write(f"# {line}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in sorted(items, key=lambda item: item.id):
        if item.id in assignment:
            writer.writerow((item.id, assignment[item.id], *checksums(item)))
    return buffer.getvalue()


def _check_unique(items: list[Item], root: Path) -> None:
    seen: dict[str, Item] = {}
    for item in items:
        if item.id in seen:
            raise DatasetError(f"two images under {root} have the id {item.id!r}: {seen[item.id].image} and {item.image}")
        seen[item.id] = item


def resolve(
    items: list[Item],
    *,
    root: Path,
    tag: str,
    split: str,
    paper: PaperSplit | None,
    split_file: Path | None,
    seed: int,
    validation: bool,
    observer: int = 1,
) -> list[Pair]:
    """Pairs of the chosen split. The split file (given, else the repository's for `tag`) is verified;
    without one the split is drawn and a warning says that nothing was verified. Validation images
    count as train unless `validation` is set. Observer 2 scores the test images against the second
    observer's masks; training always uses the first observer."""
    if not items:
        raise DatasetError(f"no annotated images found under {root}")
    _check_unique(items, root)
    if split not in SPLIT_MODES:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLIT_MODES)}")
    path = Path(split_file) if split_file is not None else default_split_file(tag, split)
    if split_file is not None or path.is_file():
        assignment = verify(items, read_split_file(path), path, root)
    else:
        warnings.warn(
            f"no split file for {tag} ({path} absent): the {split} split was drawn with seed {seed} and NO "
            f"checksums were verified; write one with `saltbench splits --kind ... --root {root}`",
            UserWarning,
            stacklevel=2,
        )
        assignment = draw(items, split, paper, seed)
    pairs = []
    for item in sorted(items, key=lambda item: item.id):
        if item.id not in assignment:
            continue
        chosen = assignment[item.id]
        mask = item.mask
        if observer == 2 and chosen == "test":
            if item.second_mask is None:
                raise DatasetError(f"observer 2 asked for but test image {item.image} has no second observer's mask")
            mask = item.second_mask
        pairs.append(Pair(item.id, item.image, mask, "train" if chosen == "val" and not validation else chosen, item.fov))
    return pairs
