"""ARCADE (Popov et al. 2024), coronary X-ray angiography, syntax task, as released:
``syntax/{train,val,test}/images/*.png`` with COCO polygons in ``syntax/{split}/annotations/{split}.json``.

The vessel mask of an image is the union of all its segment annotations (the 25 SYNTAX segments),
rendered once into the cache folder; a split file checksums the annotations themselves, so a changed
annotation is caught whatever renders it. The paper's 700/300 split is drawn from the 1000 official
training images; the official train/val/test split is available too.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from PIL import Image, ImageDraw

from benchmark.data.layout import Pair

from benchmark.data.splits import Derived, Item, PaperSplit, resolve
from benchmark.errors import DatasetError
from benchmark.io import atomic_write

PAPER = PaperSplit(n_train=700, n_test=300, pool=("train",))
OFFICIAL = ("train", "val", "test")


def _load_coco(path: Path) -> dict:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"ARCADE annotation file {path} is unreadable: {error}") from error
    if not isinstance(coco, dict) or not {"images", "annotations"} <= set(coco):
        raise DatasetError(f"ARCADE annotation file {path} is not COCO (needs 'images' and 'annotations')")
    return coco


def _polygons(annotation: dict, path: Path) -> list[list[float]]:
    segmentation = annotation.get("segmentation")
    if not isinstance(segmentation, list) or not all(isinstance(polygon, list) for polygon in segmentation):
        raise DatasetError(f"{path}: annotation {annotation.get('id')} has no polygon segmentation (RLE is not supported)")
    return segmentation


def _render(size: tuple[int, int], polygons: list[list[float]], path: Path) -> None:
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        points = list(zip(polygon[0::2], polygon[1::2]))
        if points:
            draw.polygon(points, fill=255, outline=255)
    atomic_write(path, lambda tmp: mask.save(tmp, format="PNG"))


def scan(root: Path, cache_dir: Path) -> list[Item]:
    """Every image of the syntax task; masks are rendered into `cache_dir` unless already there."""
    root, cache_dir = Path(root), Path(cache_dir)
    items = []
    for official in OFFICIAL:
        base = root / "syntax" / official
        annotation_file = base / "annotations" / f"{official}.json"
        if not (base / "images").is_dir() or not annotation_file.is_file():
            raise DatasetError(f"ARCADE needs {base / 'images'} and {annotation_file} (root {root} should hold syntax/)")
        coco = _load_coco(annotation_file)
        polygons: dict[object, list] = {}
        for annotation in sorted(coco["annotations"], key=lambda a: str(a.get("id"))):
            polygons.setdefault(annotation.get("image_id"), []).extend(_polygons(annotation, annotation_file))
        listed = {entry["file_name"]: entry for entry in coco["images"]}
        for image in sorted((base / "images").glob("*.png")):
            entry = listed.get(image.name)
            if entry is None:
                raise DatasetError(f"ARCADE image {image} is not listed in {annotation_file}")
            size = (int(entry["width"]), int(entry["height"]))
            source = json.dumps({"size": size, "polygons": polygons.get(entry["id"], [])}, sort_keys=True)
            digest = hashlib.sha256(source.encode()).hexdigest()
            mask = cache_dir / f"{official}_{image.stem}-{digest[:16]}.png"
            if not mask.is_file():
                _render(size, polygons.get(entry["id"], []), mask)
            items.append(Item(
                id=f"{official}_{image.stem}",
                image=image,
                mask=mask,
                official=official,
                mask_derived=Derived(f"annotations of {image.name} in {annotation_file}", digest),
            ))
    return items


def pairs(root: Path, split_file: Path | None = None, *, cache_dir: Path, split: str = "paper", seed: int = 0,
          validation: bool = False) -> list[Pair]:
    return resolve(scan(root, cache_dir), root=Path(root), tag="arcade", split=split, paper=PAPER,
                   split_file=split_file, seed=seed, validation=validation)
