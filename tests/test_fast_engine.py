"""The fast engine's guarantees: mixed precision trains like fp32 within a stated tolerance and keeps
the rebuild and master weights in float32; DataLoader workers change nothing; the SVD cache is keyed
by the weight, shared between cells and never trusted when corrupt."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from benchmark.config import validate
from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import split_pairs
from benchmark.data.sources import load_pairs
from benchmark.engine.cell import run_cell
from benchmark.engine.precision import autocast, grad_scaler
from benchmark.engine.train import epoch_loader
from benchmark.grid import expand_cells, fingerprint
from methods import svd_cache
from methods.base import thin_svd
from methods.salt import SALTLayer
from tests.conftest import tiny_grid

# bf16 keeps 8 mantissa bits: after 2 epochs of a tiny U-Net its training loss and test Dice stay this
# close to fp32's (measured: about 1e-3 and 1e-2 apart).
BF16_LOSS_TOLERANCE = 0.02
BF16_DICE_TOLERANCE = 0.05


def _grid(tmp_path, precision: str, workers: int = 0) -> dict:
    grid = tiny_grid(tmp_path)
    grid["train"] = {**grid["train"], "precision": precision, "workers": workers}
    return validate(grid)


def test_bf16_trains_within_tolerance_of_fp32(tmp_path):
    summaries = {}
    for precision in ("fp32", "bf16"):
        config = _grid(tmp_path / precision, precision)
        summaries[precision] = json.loads(run_cell(config, "unet_tiny-bright-s0").read_text())
    fp32, bf16 = summaries["fp32"], summaries["bf16"]
    assert bf16["provenance"]["precision"] == "bf16" and fp32["provenance"]["precision"] == "fp32"
    assert bf16["fingerprint"] != fp32["fingerprint"]
    assert bf16["trained"]["final_loss"] != fp32["trained"]["final_loss"]  # autocast really ran
    assert abs(bf16["trained"]["final_loss"] - fp32["trained"]["final_loss"]) < BF16_LOSS_TOLERANCE
    assert abs(bf16["metrics"]["dice_mean"] - fp32["metrics"]["dice_mean"]) < BF16_DICE_TOLERANCE


def test_unknown_precision_is_a_config_error(tmp_path):
    grid = tiny_grid(tmp_path)
    grid["train"]["precision"] = "fp8"
    with pytest.raises(ValueError, match="precision"):
        validate(grid)


def test_salt_rebuild_and_master_weights_stay_float32_under_autocast():
    torch.manual_seed(0)
    layer = SALTLayer(nn.Linear(32, 48), rank=4, sv_rank=0.5)
    seen = []
    original = layer.layer_forward
    layer.layer_forward = lambda x, weight: (seen.append(weight.dtype), original(x, weight))[1]
    x = torch.randn(3, 32)
    with autocast("bf16", torch.device("cpu")):
        out = layer(x)
    assert seen == [torch.float32]  # the rebuilt weight; only the layer's own product is bf16
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in layer.parameters() if p.requires_grad)


def test_fp16_scales_the_loss_and_bf16_does_not():
    assert grad_scaler("fp16", torch.device("cpu")).is_enabled()
    assert not grad_scaler("bf16", torch.device("cpu")).is_enabled()


def test_workers_do_not_change_batches_or_fingerprint(tmp_path):
    config = _grid(tmp_path, "fp32")
    pairs = load_pairs("bright", config["datasets"]["bright"], tmp_path / "results")
    dataset = VesselDataset(split_pairs(pairs, "train"), 64, augment=True, seed=3, crop=True)
    for epoch in (0, 1):
        serial = list(epoch_loader(dataset, 2, 3, epoch, 0, torch.device("cpu")))
        parallel = list(epoch_loader(dataset, 2, 3, epoch, 2, torch.device("cpu")))
        assert len(serial) == len(parallel) > 1
        for (image_a, mask_a, _), (image_b, mask_b, _) in zip(serial, parallel):
            assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)
    epoch0 = torch.cat([image for image, _, _ in epoch_loader(dataset, 2, 3, 0, 0, torch.device("cpu"))])
    epoch1 = torch.cat([image for image, _, _ in epoch_loader(dataset, 2, 3, 1, 0, torch.device("cpu"))])
    assert not torch.equal(epoch0, epoch1)  # each epoch draws its own augmentation
    cell = expand_cells(config)["unet_tiny-bright-s0"]
    assert fingerprint(cell, config) == fingerprint(cell, _grid(tmp_path, "fp32", workers=2))


def test_a_cell_trained_with_two_workers_equals_one_trained_with_none(tmp_path):
    results = {}
    for workers in (0, 2):
        config = _grid(tmp_path / f"w{workers}", "fp32", workers)
        summary = json.loads(run_cell(config, "unet_tiny-bright-s0").read_text())
        log = (run_cell(config, "unet_tiny-bright-s0").parent / "train_log.csv").read_text().splitlines()
        results[workers] = ([line.split(",")[:6] for line in log], summary["metrics"])
    assert results[0] == results[2]  # losses per epoch (the columns before the measured seconds, images, memory) and metrics


def test_svd_cache_is_keyed_by_the_weight_and_reused(tmp_path):
    weight = torch.randn(24, 16)
    with svd_cache.cached_in(tmp_path):
        first = thin_svd(weight)
        files = sorted(tmp_path.iterdir())
        assert len(files) == 1
        calls = []
        again = svd_cache.cached(weight, lambda m: calls.append(m) or thin_svd(m))
        assert calls == [] and all(torch.equal(a, b) for a, b in zip(first, again))
        changed = weight.clone()
        changed[0, 0] += 1e-3
        thin_svd(changed)
        assert len(list(tmp_path.iterdir())) == 2  # a changed checkpoint gives a new key
    uncached = thin_svd(weight)
    assert all(torch.equal(a, b) for a, b in zip(first, uncached))


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_a_corrupt_svd_cache_file_is_recomputed_not_trusted(tmp_path, capsys, damage):
    weight = torch.randn(20, 12)
    with svd_cache.cached_in(tmp_path):
        reference = thin_svd(weight)
    [path] = tmp_path.iterdir()
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":
        data[-5] ^= 0xFF  # inside the tensor data: the file still parses
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    with svd_cache.cached_in(tmp_path):
        again = thin_svd(weight)
    assert all(torch.equal(a, b) for a, b in zip(reference, again))
    assert "recomputing" in capsys.readouterr().out
    with svd_cache.cached_in(tmp_path):  # rewritten whole: trusted again, silently
        thin_svd(weight)
    assert "recomputing" not in capsys.readouterr().out


def test_cells_share_the_svd_cache(tmp_path):
    grid = tiny_grid(tmp_path, baselines=[], backbones={"litemedsam": {"name": "litemedsam", "tal_norm": "layer"}},
                     methods=[{"name": "svd", "targets": ["attn.proj"]}, {"name": "salt", "rank": 2, "targets": ["attn.proj"]}],
                     input_size=256)
    grid["datasets"]["bright"].update(size=256, n_train=2, n_test=1)
    grid["train"] = {**grid["train"], "epochs": 0}
    config = validate(grid)
    cache = tmp_path / "results" / "cache" / "svd"
    run_cell(config, "litemedsam-svd-bright-s0")
    count = len(list(cache.iterdir()))
    assert count > 0
    run_cell(config, "litemedsam-salt_r2-bright-s0")
    assert len(list(cache.iterdir())) == count  # same frozen weights: no new factorisation
