"""Data layer: synthetic generator, SALT layout reader/validator, transforms, torch dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage as ndi

from benchmark.data import synthetic
from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import split_pairs
from benchmark.data.layout import Pair, load_image, load_mask, read_salt_layout, validate_pairs
from benchmark.data.synthetic import MODALITIES, generate_image, write_dataset
from benchmark.data.transforms import augment, resize_pad
from benchmark.errors import DatasetError


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- synthetic generator -------------------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
def test_generate_image_is_deterministic_per_rng_seed(modality: str) -> None:
    image_a, mask_a = generate_image(modality, 64, _rng(7))
    image_b, mask_b = generate_image(modality, 64, _rng(7))
    image_c, mask_c = generate_image(modality, 64, _rng(8))
    assert image_a.shape == (64, 64, 3) and image_a.dtype == np.uint8
    assert mask_a.shape == (64, 64) and mask_a.dtype == bool
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(mask_a, mask_b)
    assert not np.array_equal(image_a, image_c)
    assert not np.array_equal(mask_a, mask_c)


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("size", [64, 256])
def test_vessel_area_fraction_and_no_one_pixel_vessels(modality: str, size: int) -> None:
    for seed in range(3 if size == 256 else 6):
        _, mask = generate_image(modality, size, _rng(seed))
        assert 0.06 <= mask.mean() <= 0.22, (modality, size, seed, mask.mean())
        # Vessels are at least 3 px wide, so a 3x3 opening keeps nearly all of them; 1-px lines would vanish.
        opened = ndi.binary_opening(mask, structure=np.ones((3, 3), dtype=bool))
        assert opened.sum() >= 0.85 * mask.sum(), (modality, size, seed)


def test_modalities_have_opposite_vessel_contrast() -> None:
    """Vessels are brighter than their surroundings in bright_speckle and darker in dark_fundus."""
    for seed in range(3):
        for modality, sign in (("bright_speckle", 1.0), ("dark_fundus", -1.0)):
            image, mask = generate_image(modality, 128, _rng(seed))
            green = image[:, :, 1].astype(float)
            ring = ndi.binary_dilation(mask, iterations=3) & ~mask & (green > 0)
            difference = green[mask].mean() - green[ring].mean()
            assert sign * difference > 10, (modality, seed, difference)


def test_dark_fundus_is_black_outside_the_field_of_view() -> None:
    image, mask = generate_image("dark_fundus", 64, _rng(0))
    for corner in (image[:4, :4], image[:4, -4:], image[-4:, :4], image[-4:, -4:]):
        assert corner.max() == 0
    assert not mask[:4, :4].any()
    assert image[24:40, 24:40, 0].mean() > image[24:40, 24:40, 2].mean()  # reddish background


def test_generate_image_rejects_unknown_modality() -> None:
    with pytest.raises(ValueError, match="oct"):
        generate_image("oct", 64, _rng(0))


def test_write_dataset_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", "bright_speckle", n_train=2, n_test=1, size=64, seed=3)
    second = write_dataset(tmp_path / "b", "bright_speckle", n_train=2, n_test=1, size=64, seed=3)
    other = write_dataset(tmp_path / "c", "bright_speckle", n_train=2, n_test=1, size=64, seed=4)
    assert _files(first) == _files(second)
    assert (first / "images/synth_0000.png").read_bytes() != (other / "images/synth_0000.png").read_bytes()


def test_image_i_does_not_depend_on_how_many_images_are_written(tmp_path: Path) -> None:
    small = write_dataset(tmp_path / "three", "dark_fundus", n_train=2, n_test=1, size=64, seed=1)
    large = write_dataset(tmp_path / "five", "dark_fundus", n_train=3, n_test=2, size=64, seed=1)
    for index in range(3):
        for folder in ("images", "masks"):
            name = f"{folder}/synth_{index:04d}.png"
            assert (small / name).read_bytes() == (large / name).read_bytes(), name


def test_write_dataset_produces_a_valid_salt_layout(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "synth", "dark_fundus", n_train=3, n_test=2, size=64, seed=0)
    assert (root / "data_split.csv").read_text().splitlines() == [
        "imgs,split",
        "synth_0000.png,train",
        "synth_0001.png,train",
        "synth_0002.png,train",
        "synth_0003.png,test",
        "synth_0004.png,test",
    ]
    marker = (root / "SYNTHETIC.txt").read_text()
    for expected in ("SYNTHETIC", "modality: dark_fundus", "seed: 0", "n_train: 3", "n_test: 2",
                     f"generator_version: {synthetic.GENERATOR_VERSION}"):
        assert expected in marker
    pairs = read_salt_layout(root)
    validate_pairs(pairs)
    assert [p.id for p in split_pairs(pairs, "test")] == ["synth_0003", "synth_0004"]
    mask_values = np.unique(np.asarray(Image.open(root / "masks/synth_0000.png")))
    assert set(mask_values.tolist()) == {0, 255}
    image, mask = generate_image("dark_fundus", 64, np.random.default_rng(np.random.SeedSequence((0, 0))))
    np.testing.assert_array_equal(load_image(pairs[0].image), image)
    np.testing.assert_array_equal(load_mask(pairs[0].mask), mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no temporary leftovers


def test_write_dataset_is_idempotent_and_refuses_other_parameters(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "synth", "bright_speckle", n_train=2, n_test=1, size=64, seed=0)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert write_dataset(root, "bright_speckle", n_train=2, n_test=1, size=64, seed=0) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps
    with pytest.raises(DatasetError, match="seed: found '0', asked '5'"):
        write_dataset(root, "bright_speckle", n_train=2, n_test=1, size=64, seed=5)
    with pytest.raises(DatasetError, match="modality"):
        write_dataset(root, "dark_fundus", n_train=2, n_test=1, size=64, seed=0)
    (root / "images/synth_0001.png").unlink()
    with pytest.raises(DatasetError, match="synth_0001.png"):
        write_dataset(root, "bright_speckle", n_train=2, n_test=1, size=64, seed=0)


def test_write_dataset_refuses_a_foreign_directory(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "notes.txt").write_text("real data")
    with pytest.raises(DatasetError, match="SYNTHETIC.txt"):
        write_dataset(root, "bright_speckle", n_train=1, n_test=1, size=64)


def test_interrupted_write_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = synthetic.generate_image

    def failing(modality: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        calls.append(modality)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(modality, size, rng)

    monkeypatch.setattr(synthetic, "generate_image", failing)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "synth", "bright_speckle", n_train=3, n_test=1, size=64)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synthetic, "generate_image", real)
    validate_pairs(read_salt_layout(write_dataset(tmp_path / "synth", "bright_speckle", 3, 1, size=64)))


# --- SALT layout: reading and validation ---------------------------------------------------------


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _layout(root: Path, rows: list[tuple[str, str]], header: str = "imgs,split") -> Path:
    """Hand-made SALT dataset: each listed image is 16x24 RGB with a 0/255 mask of the same name."""
    mask = np.zeros((16, 24), dtype=np.uint8)
    mask[4:12, 6:10] = 255
    for name, _ in rows:
        _save(root / "images" / name, np.full((16, 24, 3), 90, dtype=np.uint8))
        _save(root / "masks" / name, mask)
    (root / "data_split.csv").write_text("\n".join([header] + [f"{n},{s}" for n, s in rows]) + "\n")
    return root


GOOD_ROWS = [("a.png", "train"), ("b.png", "train"), ("c.png", "test")]


def test_read_salt_layout_lists_pairs_in_csv_order(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS + [("e.png", "val")])
    pairs = read_salt_layout(root)
    assert pairs[0] == Pair("a", root / "images/a.png", root / "masks/a.png", "train")
    assert [(p.id, p.split) for p in pairs] == [("a", "train"), ("b", "train"), ("c", "test"), ("e", "val")]
    validate_pairs(pairs, required_splits=("train", "val", "test"))


def test_mask_may_have_another_extension_than_its_image(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS)
    (root / "images/a.png").rename(root / "images/a.jpg")
    (root / "data_split.csv").write_text("imgs,split\na.jpg,train\nb.png,train\nc.png,test\n")
    pairs = read_salt_layout(root)
    assert pairs[0].image == root / "images/a.jpg" and pairs[0].mask == root / "masks/a.png"
    validate_pairs(pairs)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("root", "does not exist"),
        ("images_dir", "images"),
        ("masks_dir", "masks"),
        ("csv", "data_split.csv"),
        ("columns", "data_split.csv must have columns imgs,split"),
        ("image", "images/b.png is missing"),
        ("mask", "masks/b.png is missing"),
        ("split", "unknown split 'valid' for b.png"),
    ],
)
def test_read_salt_layout_errors_name_the_problem(tmp_path: Path, breakage: str, expected: str) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS, header="image,split" if breakage == "columns" else "imgs,split")
    if breakage == "root":
        root = tmp_path / "absent"
    elif breakage in ("images_dir", "masks_dir"):
        folder = root / breakage.removesuffix("_dir")
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    elif breakage == "csv":
        (root / "data_split.csv").unlink()
    elif breakage in ("image", "mask"):
        (root / f"{breakage}s/b.png").unlink()
    elif breakage == "split":
        (root / "data_split.csv").write_text("imgs,split\na.png,train\nb.png,valid\nc.png,test\n")
    with pytest.raises(DatasetError, match=expected):
        read_salt_layout(root)


def test_validate_pairs_reports_size_mismatch_with_both_sizes(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS)
    _save(root / "masks/b.png", np.zeros((16, 20), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"images/b.png is 16x24 \(HxW\) but mask .*masks/b.png is 16x20"):
        validate_pairs(read_salt_layout(root))


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0, 1, 2], r"3 distinct values \(0, 1, 2\)"), ([128, 255], r"2 distinct values \(128, 255\)")],
)
def test_validate_pairs_rejects_non_binary_masks(tmp_path: Path, values: list[int], expected: str) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS)
    mask = np.resize(np.array(values, dtype=np.uint8), (16, 24))
    _save(root / "masks/c.png", mask)
    with pytest.raises(DatasetError, match=r"masks/c.png is not binary: " + expected):
        validate_pairs(read_salt_layout(root))


def test_validate_pairs_accepts_0_1_and_colour_masks(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS)
    zero_one = np.zeros((16, 24), dtype=np.uint8)
    zero_one[2:5, 3:9] = 1
    _save(root / "masks/a.png", zero_one)
    red = np.zeros((16, 24, 3), dtype=np.uint8)
    red[2:5, 3:9, 0] = 255
    _save(root / "masks/b.png", red)
    validate_pairs(read_salt_layout(root))
    np.testing.assert_array_equal(load_mask(root / "masks/a.png"), zero_one > 0)
    np.testing.assert_array_equal(load_mask(root / "masks/b.png"), red[:, :, 0] > 0)


def test_validate_pairs_names_an_empty_required_split_and_the_root(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", [("a.png", "train"), ("b.png", "val")])
    pairs = read_salt_layout(root)
    with pytest.raises(DatasetError, match=rf"split 'test' of dataset {root} has no images"):
        validate_pairs(pairs)
    validate_pairs(pairs, required_splits=("train", "val"))


def test_validate_pairs_names_an_unreadable_image(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS)
    (root / "images/a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"image .*images/a.png is unreadable"):
        validate_pairs(read_salt_layout(root))


def test_load_image_expands_grayscale_and_drops_alpha(tmp_path: Path) -> None:
    gray = np.arange(16 * 24, dtype=np.uint8).reshape(16, 24)
    _save(tmp_path / "gray.png", gray)
    loaded = load_image(tmp_path / "gray.png")
    assert loaded.shape == (16, 24, 3) and loaded.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(loaded[:, :, channel], gray)
    rgba = np.zeros((16, 24, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7
    _save(tmp_path / "rgba.png", rgba)
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgba[..., :3])


# --- transforms ----------------------------------------------------------------------------------


def test_resize_pad_keeps_aspect_and_pads_bottom_right() -> None:
    image = np.full((40, 80, 3), 200, dtype=np.uint8)
    mask = np.zeros((40, 80), dtype=bool)
    mask[10:20, 20:40] = True
    out_image, out_mask = resize_pad(image, mask, 32)
    assert out_image.shape == (32, 32, 3) and out_image.dtype == np.uint8
    assert out_mask.shape == (32, 32) and out_mask.dtype == bool
    assert (out_image[:16] == 200).all() and (out_image[16:] == 0).all()
    expected = np.zeros((32, 32), dtype=bool)
    expected[4:8, 8:16] = True  # the block scaled by 0.4 lands on whole pixels
    np.testing.assert_array_equal(out_mask, expected)
    tall_image, tall_mask = resize_pad(image.transpose(1, 0, 2).copy(), mask.T.copy(), 32)
    assert (tall_image[:, :16] == 200).all() and (tall_image[:, 16:] == 0).all()
    np.testing.assert_array_equal(tall_mask, expected.T)


def test_resize_pad_mask_thresholds_coverage_at_half() -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, 8:16] = True  # an 8-px vessel: 2 px after 4x downsampling
    mask[40, 40] = True  # an isolated pixel covers 1/16 of an output pixel
    _, small = resize_pad(image, mask, 16)
    assert small[:, 2:4].all() and small.sum() == 32
    _, same = resize_pad(image, mask, 64)
    np.testing.assert_array_equal(same, mask)
    _, large = resize_pad(image, mask, 128)
    assert set(np.unique(large).tolist()) <= {False, True}
    assert abs(int(large.sum()) - 4 * int(mask.sum())) <= 4 * 64


def test_augment_keeps_mask_binary_and_aligned_with_image() -> None:
    mask = torch.zeros(1, 48, 48)
    mask[:, 10:38, 20:26] = 1
    mask[:, 30:34, 5:45] = 1
    image = mask.repeat(3, 1, 1)
    changed = 0
    for seed in range(20):
        aug_image, aug_mask = augment(image, mask, _rng(seed))
        assert aug_image.shape == (3, 48, 48) and aug_mask.shape == (1, 48, 48)
        assert set(aug_mask.unique().tolist()) <= {0.0, 1.0}
        assert 0.0 <= aug_image.min() and aug_image.max() <= 1.0
        agreement = ((aug_image[1] > 0.4) == (aug_mask[0] > 0.5)).float().mean()
        assert agreement > 0.97, (seed, agreement)
        changed += not torch.equal(aug_mask, mask)
    assert changed >= 10  # flip (p=0.5) and rotation (p=0.5) move the mask in most of 20 draws


def test_augment_is_reproducible_for_a_given_rng_seed() -> None:
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = (torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    first = augment(image, mask, _rng(5))
    second = augment(image, mask, _rng(5))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    outcomes = {augment(image, mask, _rng(seed))[0].sum().item() for seed in range(8)}
    assert len(outcomes) > 4


# --- torch dataset -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_pairs(tmp_path_factory: pytest.TempPathFactory) -> list[Pair]:
    root = write_dataset(tmp_path_factory.mktemp("data") / "synth", "dark_fundus", 3, 1, size=64, seed=2)
    pairs = read_salt_layout(root)
    validate_pairs(pairs)
    return pairs


def test_vessel_dataset_items_without_augmentation(synthetic_pairs: list[Pair]) -> None:
    train = split_pairs(synthetic_pairs, "train")
    dataset = VesselDataset(train, size=32)
    assert len(dataset) == 3
    item = dataset[1]
    assert item["id"] == "synth_0001"
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    expected_image, expected_mask = resize_pad(load_image(train[1].image), load_mask(train[1].mask), 32)
    torch.testing.assert_close(item["image"], torch.from_numpy(expected_image).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(item["mask"][0], torch.from_numpy(expected_mask).float())


def test_vessel_dataset_augmentation_depends_only_on_seed_epoch_index(synthetic_pairs: list[Pair]) -> None:
    train = split_pairs(synthetic_pairs, "train")
    uninterrupted = VesselDataset(train, size=64, augment=True, seed=11)
    seen = {}
    for epoch in range(4):
        uninterrupted.set_epoch(epoch)
        seen[epoch] = [uninterrupted[i] for i in range(len(uninterrupted))]
    resumed = VesselDataset(train, size=64, augment=True, seed=11)
    resumed.set_epoch(3)
    for index in reversed(range(len(resumed))):
        item = resumed[index]
        assert torch.equal(item["image"], seen[3][index]["image"])
        assert torch.equal(item["mask"], seen[3][index]["mask"])
    assert any(not torch.equal(seen[0][i]["image"], seen[1][i]["image"]) for i in range(3))
    other_seed = VesselDataset(train, size=64, augment=True, seed=12)
    assert any(not torch.equal(other_seed[i]["image"], seen[0][i]["image"]) for i in range(3))
    for items in seen.values():
        for item in items:
            assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    copies = VesselDataset([train[0]] * 6, size=64, augment=True, seed=11)
    distinct = {tuple(copies[i]["image"].flatten()[::97].tolist()) for i in range(6)}
    assert len(distinct) >= 3  # the same image at different indices gets different augmentations


def test_split_pairs_and_empty_dataset(synthetic_pairs: list[Pair]) -> None:
    assert [p.id for p in split_pairs(synthetic_pairs, "train")] == ["synth_0000", "synth_0001", "synth_0002"]
    assert split_pairs(synthetic_pairs, "val") == []
    with pytest.raises(ValueError, match="validation"):
        split_pairs(synthetic_pairs, "validation")
    with pytest.raises(DatasetError, match="at least one"):
        VesselDataset([], size=32)


# --- foreground-keeping crop, on-disk cache, native resolution ------------------------------------


def test_foreground_crop_keeps_foreground_and_stays_binary() -> None:
    mask = torch.zeros(1, 64, 64)
    mask[:, 50:53, 4:7] = 1  # one small vessel piece near a corner
    image = mask.repeat(3, 1, 1)
    cropped = 0
    for seed in range(40):
        aug_image, aug_mask = augment(image, mask, _rng(seed), crop=True)
        assert aug_mask.shape == (1, 64, 64) and set(aug_mask.unique().tolist()) <= {0.0, 1.0}
        assert aug_mask.sum() > 0, seed
        agreement = ((aug_image[1] > 0.5) == (aug_mask[0] > 0.5)).float().mean()
        assert agreement > 0.97, (seed, agreement)
        cropped += aug_mask.sum() > mask.sum() * 1.2  # a crop scales the vessel up
    assert cropped >= 10
    first, second = augment(image, mask, _rng(3), crop=True), augment(image, mask, _rng(3), crop=True)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_dataset_cache_is_written_once_and_reused(tmp_path: Path, synthetic_pairs: list[Pair],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark.data.dataset as dataset_module

    fresh = VesselDataset(synthetic_pairs, size=32, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("*-32.npz"))
    assert len(files) == 1

    def no_decoding(path: Path) -> np.ndarray:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(dataset_module, "load_image", no_decoding)
    cached = VesselDataset(synthetic_pairs, size=32, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(cached.images, fresh.images)
    np.testing.assert_array_equal(cached.masks, fresh.masks)
    assert cached[0]["orig_size"] == fresh[0]["orig_size"] == (64, 64)
    with pytest.raises(AssertionError, match="decoded"):
        VesselDataset(synthetic_pairs, size=48, cache_dir=tmp_path / "cache")  # another size, another file
    monkeypatch.undo()
    os.utime(synthetic_pairs[0].image, ns=(1, 1))  # a changed file gets a new key
    VesselDataset(synthetic_pairs, size=32, cache_dir=tmp_path / "cache")
    (new_file,) = set((tmp_path / "cache").glob("*-32.npz")) - set(files)
    new_file.write_bytes(b"truncated")  # a broken cache file is decoded again, not trusted
    rebuilt = VesselDataset(synthetic_pairs, size=32, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(rebuilt.masks, fresh.masks)
    assert new_file.stat().st_size > len(b"truncated")


class _ThresholdModel(torch.nn.Module):
    """Logits +1 where the red channel is bright, -1 elsewhere: a perfect segmenter of _blocky images."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image[:, :1] > 0.5).float() * 2 - 1


def test_native_resolution_metrics_undo_padding_and_resize(tmp_path: Path) -> None:
    from benchmark.engine.evaluate import evaluate, native_prediction

    mask = np.zeros((40, 24), dtype=bool)
    mask[4:12, 2:10] = True  # blocks on even coordinates survive a 2x downsampling exactly
    mask[20:36, 14:18] = True
    _save(tmp_path / "images/a.png", np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, axis=2))
    _save(tmp_path / "masks/a.png", mask.astype(np.uint8) * 255)
    (tmp_path / "data_split.csv").write_text("imgs,split\na.png,test\n")
    dataset = VesselDataset(read_salt_layout(tmp_path), size=20)
    item = dataset[0]
    assert item["orig_size"] == (40, 24)
    logits = _ThresholdModel()(item["image"][None])[0, 0]
    assert not (logits[:, 12:] > 0).any()  # padding columns
    np.testing.assert_array_equal(native_prediction(logits, (40, 24), 20), mask)
    native = evaluate(_ThresholdModel(), dataset, torch.device("cpu"), 1, resolution="native")
    network = evaluate(_ThresholdModel(), dataset, torch.device("cpu"), 1)
    assert native == [{"id": "a", "dice": 1.0, "hd95": 0.0}]
    assert network[0]["dice"] == 1.0
    with pytest.raises(ValueError, match="unknown metrics resolution 'full'"):
        evaluate(_ThresholdModel(), dataset, torch.device("cpu"), 1, resolution="full")


def test_validate_pairs_reports_every_problem_at_once(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", GOOD_ROWS)
    (root / "images/a.png").write_bytes(b"not a png")
    _save(root / "masks/b.png", np.zeros((16, 20), dtype=np.uint8))
    _save(root / "masks/c.png", np.resize(np.array([0, 1, 2], dtype=np.uint8), (16, 24)))
    with pytest.raises(DatasetError) as caught:
        validate_pairs(read_salt_layout(root))
    message = str(caught.value)
    assert message.startswith(f"3 problems in dataset {root}:")
    assert "images/a.png is unreadable" in message and "masks/b.png is 16x20" in message
    assert "masks/c.png is not binary" in message


def test_validate_pairs_caps_the_list_and_counts_the_rest(tmp_path: Path) -> None:
    from benchmark.data import layout

    rows = [(f"i{index}.png", "train" if index else "test") for index in range(layout.SHOWN_PROBLEMS + 5)]
    root = _layout(tmp_path / "d", rows)
    for name, _split in rows:
        _save(root / "masks" / name, np.full((16, 24), 7, dtype=np.uint8))
    with pytest.raises(DatasetError, match=rf"{len(rows)} problems in dataset .*\n(  - .*\n){{{layout.SHOWN_PROBLEMS}}}  \.\.\. and 5 more$"):
        validate_pairs(read_salt_layout(root))
