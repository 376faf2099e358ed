"""Publisher layouts (DRIVE, ROSE, ARCADE, XRay-Angio, DIAS, CHASE_DB1) on tiny fixture copies, the
paper's splits, split files with checksums, and the CHASE_DB1 copy in ../shared/data when present."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.config import validate
from benchmark.data import arcade, chase, dias, drive, rose, splits, xray_angio
from benchmark.data.layout import load_image, load_mask, validate_pairs
from benchmark.data.sources import load_pairs, write_split
from benchmark.data.splits import SPLIT_DIR, Item, PaperSplit, draw, read_split_file
from benchmark.errors import ConfigError, DatasetError
from tests.conftest import SHARED_DATA, tiny_grid

CHASE_REAL = SHARED_DATA / "CHASE_DB1"
H, W = 10, 12


@pytest.fixture(autouse=True)
def no_shipped_split_files(tmp_path_factory, monkeypatch):
    """Fixture copies must not be checked against the repository's split files for the real data."""
    monkeypatch.setattr(splits, "SPLIT_DIR", tmp_path_factory.mktemp("no_split_files"))


def _save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _image(number: int) -> np.ndarray:
    """An RGB image whose red channel carries `number`, so a pair can be traced to its files."""
    image = np.full((H, W, 3), 40, dtype=np.uint8)
    image[..., 0] = number
    return image


def _mask(number: int, value: int = 255) -> np.ndarray:
    """A vessel mask whose foreground row is number % H, so pairing errors show."""
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[number % H, 2:9] = value
    mask[:, 5] = value
    return mask


def _field_of_view() -> np.ndarray:
    fov = np.full((H, W), 255, dtype=np.uint8)
    fov[0, 0] = fov[0, -1] = fov[-1, 0] = fov[-1, -1] = 0
    return fov


def _counts(pairs) -> dict[str, int]:
    return {split: sum(p.split == split for p in pairs) for split in ("train", "val", "test")}


def _quiet(reader, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return reader(*args, **kwargs)


# --- fixture copies of each publisher layout ------------------------------------------------------


def make_drive(root: Path, second: bool = True, test_manual: bool = True) -> Path:
    for folder, numbers in (("training", range(21, 41)), ("test", range(1, 21))):
        for n in numbers:
            _save(root / folder / "images" / f"{n:02d}_{folder}.tif", _image(n))
            _save(root / folder / "mask" / f"{n:02d}_{folder}_mask.gif", _field_of_view())
            if folder == "training" or test_manual:
                _save(root / folder / "1st_manual" / f"{n:02d}_manual1.gif", _mask(n))
            if folder == "test" and second:
                _save(root / folder / "2nd_manual" / f"{n:02d}_manual2.gif", _mask(n + 1))
    return root


def make_rose(root: Path) -> Path:
    for official, count in (("train", 30), ("test", 9)):
        for n in range(1, count + 1):
            _save(root / "ROSE-1/SVC" / official / "img" / f"{n:02d}.tif", _image(n)[..., 0])
            _save(root / "ROSE-1/SVC" / official / "gt" / f"{n:02d}.tif", _mask(n))
    for official, count in (("train", 31), ("test", 2)):
        for n in range(count):
            _save(root / "ROSE-2" / official / "original" / f"{n}_OD_SVP.png", _image(n))
            _save(root / "ROSE-2" / official / "gt" / f"{n}_OD_SVP.png", _mask(n))
    return root


RECTANGLE = [2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0]  # x, y pairs: columns 2-6, rows 1-4


def make_arcade(root: Path, counts=(("train", 10), ("val", 3), ("test", 4))) -> Path:
    for official, count in counts:
        base = root / "syntax" / official
        images, annotations = [], []
        for n in range(1, count + 1):
            _save(base / "images" / f"{n}.png", _image(n))
            images.append({"id": n, "file_name": f"{n}.png", "width": W, "height": H})
            annotations.append({"id": 100 * n, "image_id": n, "category_id": 1, "segmentation": [RECTANGLE]})
            annotations.append({"id": 100 * n + 1, "image_id": n, "category_id": 7,
                                "segmentation": [[8.0, 6.0, 10.0, 6.0, 10.0, 8.0, 8.0, 8.0]]})
        (base / "annotations").mkdir(parents=True)
        (base / "annotations" / f"{official}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": []}))
    return root


def make_xray(root: Path) -> Path:
    folder = root / xray_angio.FOLDER
    for n in range(1, 135):
        _save(folder / f"{n}.pgm", _image(n)[..., 0])
        _save(folder / f"{n}_gt.pgm", _mask(n))
    return root


def make_dias(root: Path, counts=(("training", 20), ("validation", 5), ("test", 5)), frames: int = 3) -> Path:
    for folder, count in counts:
        for s in range(count):
            for f in range(frames):
                frame = np.full((H, W), 200, dtype=np.uint8)
                frame[f, :] = 10 + f  # a dark row per frame: the projection holds all of them
                _save(root / folder / "images" / f"image_s{s}_i{f}.png", frame)
            _save(root / folder / "labels" / f"label_s{s}.png", _mask(s))
    return root


def make_chase(root: Path) -> Path:
    for patient in range(1, 15):
        for eye in "LR":
            stem = f"Image_{patient:02d}{eye}"
            _save(root / f"{stem}.jpg", _image(patient))
            _save(root / f"{stem}_1stHO.png", _mask(patient) > 0)
            _save(root / f"{stem}_2ndHO.png", _mask(patient + 1) > 0)
    return root


# --- per-layout counts and pairing ----------------------------------------------------------------


def test_drive_paper_split_is_14_6_of_the_training_images_and_pairs_match(tmp_path):
    root = make_drive(tmp_path / "DRIVE")
    with pytest.warns(UserWarning, match="NO checksums"):
        pairs = drive.pairs(root)
    validate_pairs(pairs)
    assert _counts(pairs) == {"train": 14, "val": 0, "test": 6}
    assert all(p.id.endswith("_training") for p in pairs)
    for pair in pairs:
        number = int(pair.id.split("_")[0])
        assert pair.mask.name == f"{number:02d}_manual1.gif" and pair.fov.name == f"{pair.id}_mask.gif"
        assert load_image(pair.image)[0, 0, 0] == number
        np.testing.assert_array_equal(load_mask(pair.mask), _mask(number) > 0)  # GIF palette read as grey
    held_out = _quiet(drive.pairs, root, validation=True)
    assert _counts(held_out) == {"train": 12, "val": 2, "test": 6}
    assert {p.id for p in held_out if p.split != "test"} == {p.id for p in pairs if p.split == "train"}


def test_drive_official_split_and_second_observer(tmp_path):
    root = make_drive(tmp_path / "DRIVE")
    official = _quiet(drive.pairs, root, split="official", observer=2)
    assert _counts(official) == {"train": 20, "val": 0, "test": 20}
    test = [p for p in official if p.split == "test"]
    assert all(p.mask.parent.name == "2nd_manual" for p in test)
    assert all(p.mask.parent.name == "1st_manual" for p in official if p.split == "train")
    with pytest.raises(DatasetError, match="no second observer's mask"):
        _quiet(drive.pairs, root, observer=2)  # the paper's test images come from training/


def test_drive_without_test_annotations_has_no_official_test_split(tmp_path):
    root = make_drive(tmp_path / "DRIVE", second=False, test_manual=False)
    assert _counts(_quiet(drive.pairs, root)) == {"train": 14, "val": 0, "test": 6}
    with pytest.raises(DatasetError, match="split 'test' .* has no images"):
        validate_pairs(_quiet(drive.pairs, root, split="official"))


def test_rose_subsets_and_the_22_8_split_from_official_train(tmp_path):
    root = make_rose(tmp_path / "ROSE")
    svc = _quiet(rose.pairs, root)
    validate_pairs(svc)
    assert _counts(svc) == {"train": 22, "val": 0, "test": 8}
    assert all(p.id.startswith("train_") and p.image.stem == p.mask.stem for p in svc)
    assert _counts(_quiet(rose.pairs, root, split="official")) == {"train": 30, "val": 0, "test": 9}
    rose2 = _quiet(rose.pairs, root, subset="ROSE-2")
    assert _counts(rose2) == {"train": 22, "val": 0, "test": 8}
    assert all(p.image.parent.name == "original" for p in rose2)
    with pytest.raises(ValueError, match="unknown ROSE subset 'SVP'"):
        rose.pairs(root, subset="SVP")


def test_arcade_mask_is_the_union_of_segment_polygons(tmp_path, monkeypatch):
    root = make_arcade(tmp_path / "arcade")
    cache = tmp_path / "cache"
    official = _quiet(arcade.pairs, root, cache_dir=cache, split="official", validation=True)
    validate_pairs(official)
    assert _counts(official) == {"train": 10, "val": 3, "test": 4}
    expected = np.zeros((H, W), dtype=bool)
    expected[1:5, 2:7] = True
    expected[6:9, 8:11] = True
    pair = next(p for p in official if p.id == "val_2")
    assert load_image(pair.image)[0, 0, 0] == 2
    np.testing.assert_array_equal(load_mask(pair.mask), expected)
    stamps = {p.mask: p.mask.stat().st_mtime_ns for p in official}
    _quiet(arcade.pairs, root, cache_dir=cache, split="official")
    assert {p.mask: p.mask.stat().st_mtime_ns for p in official} == stamps  # rendered once
    monkeypatch.setattr(arcade, "PAPER", PaperSplit(n_train=7, n_test=3, pool=("train",)))
    paper = _quiet(arcade.pairs, root, cache_dir=cache)
    assert _counts(paper) == {"train": 7, "val": 0, "test": 3}
    assert all(p.id.startswith("train_") for p in paper)


def test_arcade_image_missing_from_annotations_is_named(tmp_path):
    root = make_arcade(tmp_path / "arcade")
    _save(root / "syntax/test/images/99.png", _image(99))
    with pytest.raises(DatasetError, match=r"99.png is not listed in .*test.json"):
        arcade.scan(root, tmp_path / "cache")


def test_xray_angio_93_41_from_all_134(tmp_path):
    root = make_xray(tmp_path)
    pairs = _quiet(xray_angio.pairs, root)
    assert _counts(pairs) == {"train": 93, "val": 0, "test": 41}
    for pair in pairs[:5]:
        assert pair.mask.name == f"{int(pair.id)}_gt.pgm" and load_image(pair.image)[0, 0, 0] == int(pair.id)
    assert len(_quiet(xray_angio.pairs, root / xray_angio.FOLDER)) == 134  # the unpacked folder itself
    (root / xray_angio.FOLDER / "17_gt.pgm").unlink()
    with pytest.raises(DatasetError, match="17_gt.pgm is missing"):
        xray_angio.scan(root)


def test_dias_sequences_become_minimum_intensity_projections(tmp_path):
    root = make_dias(tmp_path / "DIAS")
    pairs = _quiet(dias.pairs, root, cache_dir=tmp_path / "cache")
    validate_pairs(pairs)
    assert _counts(pairs) == {"train": 20, "val": 0, "test": 10}
    pair = pairs[0]
    expected = np.full((H, W), 200, dtype=np.uint8)
    expected[:3] = np.array([10, 11, 12])[:, None]
    np.testing.assert_array_equal(load_image(pair.image)[..., 0], expected)
    sequence = int(pair.id.split("_s")[1])
    np.testing.assert_array_equal(load_mask(pair.mask), _mask(sequence) > 0)
    (root / "test/images/image_s3_i0.png").unlink()
    (root / "test/images/image_s3_i1.png").unlink()
    (root / "test/images/image_s3_i2.png").unlink()
    with pytest.raises(DatasetError, match=r"image_s3_i\*.png for .*label_s3.png are missing"):
        dias.scan(root, tmp_path / "cache")


def test_dias_frames_of_different_sizes_are_named(tmp_path):
    root = make_dias(tmp_path / "DIAS", counts=(("training", 1),))
    _save(root / "training/images/image_s0_i2.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError, match="image_s0_i2.png is"):
        dias.scan(root, tmp_path / "cache")


def test_chase_split_keeps_both_eyes_of_a_patient_together(tmp_path):
    root = make_chase(tmp_path / "CHASE_DB1")
    pairs = _quiet(chase.pairs, root, split_file=None, validation=True)
    validate_pairs(pairs)
    counts = _counts(pairs)
    assert counts["train"] + counts["val"] == 20 and counts["test"] == 8 and counts["val"] >= 2
    split_of = {p.id: p.split for p in pairs}
    for patient in range(1, 15):
        assert split_of[f"Image_{patient:02d}L"] == split_of[f"Image_{patient:02d}R"]
        assert (split_of[f"Image_{patient:02d}L"] == "test") == (patient > 10)
    second = _quiet(chase.pairs, root, observer=2)
    assert all(p.mask.name.endswith("_2ndHO.png") == (p.split == "test") for p in second)


# --- splits, split files and checksums ------------------------------------------------------------


def _items(n: int) -> list[Item]:
    return [Item(f"im{i:02d}", Path(f"im{i:02d}.png"), Path(f"m{i:02d}.png"), official="train") for i in range(n)]


def test_draw_is_seeded_and_independent_of_listing_order():
    paper = PaperSplit(n_train=14, n_test=6, pool=None)
    first = draw(_items(20), "paper", paper, seed=0)
    assert draw(list(reversed(_items(20))), "paper", paper, seed=0) == first
    assert draw(_items(20), "paper", paper, seed=1) != first
    assert sorted(first.values()).count("test") == 6 and sorted(first.values()).count("val") == 2
    with pytest.raises(DatasetError, match="needs 14 train \\+ 6 test images but the dataset has 19"):
        draw(_items(19), "paper", paper, seed=0)


def test_split_file_round_trip_and_every_change_is_named(tmp_path):
    root = make_drive(tmp_path / "DRIVE")
    split_file = write_split("drive", root, out=tmp_path / "drive_paper.csv")
    rows = read_split_file(split_file)
    assert len(rows) == 20 and sorted(s for s, _, _ in rows.values()).count("test") == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verified = drive.pairs(root, split_file)
    assert verified == _quiet(drive.pairs, root)
    test_ids = sorted(i for i, (s, _, _) in rows.items() if s == "test")
    image = root / "training/images" / f"{test_ids[0]}.tif"
    image.write_bytes(image.read_bytes() + b"\0")
    (root / "training/images" / f"{test_ids[1]}.tif").unlink()
    mask = root / "training/1st_manual" / f"{test_ids[2].split('_')[0]}_manual1.gif"
    _save(mask, np.zeros((H, W), np.uint8))
    with pytest.raises(DatasetError) as error:
        drive.pairs(root, split_file)
    message = str(error.value)
    assert "3 problem(s)" in message
    assert f"{test_ids[0]}: image {image} changed" in message
    assert f"{test_ids[1]}: listed in the split file but its files are missing" in message
    assert f"{test_ids[2]}: mask {mask} changed" in message


def test_changed_arcade_annotation_is_caught_by_its_checksum(tmp_path):
    root = make_arcade(tmp_path / "arcade")
    split_file = write_split("arcade", root, split="official", out=tmp_path / "arcade.csv")
    annotations = root / "syntax/val/annotations/val.json"
    coco = json.loads(annotations.read_text())
    coco["annotations"][0]["segmentation"] = [[0.0, 0.0, 3.0, 0.0, 3.0, 3.0]]
    annotations.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=r"val_1: mask annotations of 1.png in .*val.json changed"):
        arcade.pairs(root, split_file, cache_dir=tmp_path / "cache", split="official")


def test_missing_split_file_and_bad_split_file_are_errors(tmp_path):
    root = make_chase(tmp_path / "CHASE_DB1")
    with pytest.raises(DatasetError, match="split file .*absent.csv does not exist"):
        chase.pairs(root, tmp_path / "absent.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("# a comment\nid,split,image_sha256,mask_sha256\nImage_01L,valid,a,b\n")
    with pytest.raises(DatasetError, match="unknown split 'valid' for Image_01L"):
        chase.pairs(root, bad)


def test_load_pairs_names_an_unreadable_image_and_a_size_mismatch(tmp_path):
    root = make_xray(tmp_path)
    entry = {"kind": "xray_angio", "root": str(root)}
    assert len(_quiet(load_pairs, "x", entry, tmp_path / "results")) == 134
    (root / xray_angio.FOLDER / "5.pgm").write_bytes(b"P5 broken")
    with pytest.raises(DatasetError, match=r"5.pgm is unreadable"):
        _quiet(load_pairs, "x", entry, tmp_path / "results")
    _save(root / xray_angio.FOLDER / "5.pgm", np.zeros((H + 2, W), np.uint8))
    with pytest.raises(DatasetError, match=r"size mismatch: image .*5.pgm is 12x12"):
        _quiet(load_pairs, "x", entry, tmp_path / "results")


def test_splits_command_writes_once_and_refuses_to_overwrite_a_different_file(tmp_path, capsys):
    root = make_chase(tmp_path / "CHASE_DB1")
    out = tmp_path / "chase.csv"
    main(["splits", "--kind", "chase_db1", "--root", str(root), "--out", str(out)])
    first = out.read_text()
    assert first.startswith("# CHASE_DB1: paper split, seed 0, ") and str(out) in capsys.readouterr().out
    main(["splits", "--kind", "chase_db1", "--root", str(root), "--out", str(out)])
    assert out.read_text() == first
    with pytest.raises(SystemExit, match="exists with other content"):
        main(["splits", "--kind", "chase_db1", "--root", str(root), "--out", str(out), "--seed", "3"])
    main(["splits", "--kind", "chase_db1", "--root", str(root), "--out", str(out), "--seed", "3", "--force"])
    assert out.read_text() != first


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "drive", "subset": "SVC"}, "kind 'drive' does not take \\['subset'\\]"),
        ({"kind": "xray_angio", "split": "official"}, "kind 'xray_angio' has no 'official' split"),
        ({"kind": "salt", "split": "paper"}, "kind 'salt' does not take \\['split'\\]"),
        ({"kind": "rose", "subset": "SVP"}, "SVP"),
    ],
)
def test_dataset_entries_are_checked_per_kind(tmp_path, entry, message):
    grid = tiny_grid(tmp_path, datasets={"d": {"root": str(tmp_path), **entry}})
    with pytest.raises(ConfigError, match=message):
        validate(grid)


# --- the real CHASE_DB1 copy ----------------------------------------------------------------------

needs_chase = pytest.mark.skipif(not CHASE_REAL.is_dir(), reason=f"{CHASE_REAL} is absent")


@needs_chase
def test_shipped_chase_split_file_verifies_against_the_real_data(tmp_path, monkeypatch):
    monkeypatch.setattr(splits, "SPLIT_DIR", SPLIT_DIR)
    config = validate(tiny_grid(tmp_path, datasets={"chase": {"kind": "chase_db1", "root": str(CHASE_REAL)}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pairs = load_pairs("chase", config["datasets"]["chase"], tmp_path / "results")
    # train.selection defaults to validation, so the split file's validation eyes are held out
    assert len(pairs) == 28 and _counts(pairs) == {"train": 16, "val": 4, "test": 8}
    assert {p.id for p in pairs if p.split == "test"} == {f"Image_{n}{e}" for n in range(11, 15) for e in "LR"}
    assert set(load_mask(pairs[0].mask).ravel().tolist()) == {False, True}
    rows = read_split_file(SPLIT_DIR / "chase_db1_paper.csv")
    assert sum(split == "val" for split, _, _ in rows.values()) == 4


@needs_chase
def test_shipped_chase_split_file_is_what_the_splits_command_draws(tmp_path):
    redrawn = write_split("chase_db1", CHASE_REAL, out=tmp_path / "chase.csv")
    assert redrawn.read_text() == (SPLIT_DIR / "chase_db1_paper.csv").read_text()


def test_split_files_in_the_repository_are_well_formed():
    files = sorted(SPLIT_DIR.glob("*.csv"))
    assert "chase_db1_paper.csv" in [f.name for f in files]
    for path in files:
        rows = read_split_file(path)
        assert all(len(i) == 64 and len(m) == 64 for _, i, m in rows.values()), path
    assert len(read_split_file(SPLIT_DIR / "chase_db1_paper.csv")) == 28
