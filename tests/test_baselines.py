"""Table 1's traditional baselines: the paper's parameter counts, the image -> logits contract,
training steps with the engine's objective, local-only encoder weights, and the GFLOPs counters."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from baselines import REGISTRY, build_baseline, get_baseline
from baselines.smp_models import IMAGENET_MEAN, IMAGENET_STD
from benchmark.cost.counting import FLOP_COUNTER_MODE, FVCORE, gflops_per_image, parameter_count
from benchmark.engine.losses import SegmentationObjective
from benchmark.engine.train import set_train_mode

TABLE1 = ["unet", "unetr", "regunet", "segnet", "deeplabv3plus", "segformer"]
PAPER_PARAMS = {"unet": 6.5e6, "unetr": 91e6, "regunet": 7.8e6, "segnet": 29e6, "deeplabv3plus": 45e6, "segformer": 43e6}
# UNETR's positional embedding grows with the input; 1024 px (SAM's size) is the one giving the paper's 91M.
COUNTED_AT = {"unetr": 1024}
# Exact counts of the default configurations. RegUNet (encoder + bottom + one 3x3 output conv) and
# SegNet (26 convolutions, 25 BatchNorms of VGG16-BN widths) were also derived by hand.
EXACT_PARAMS = {
    "unet": 6_495_868,
    "unetr": 90_676_465,
    "regunet": 7_863_456,
    "segnet": 29_443_585,
    "deeplabv3plus": 45_669_713,
    "segformer": 44_598_209,
}
SIZE = 64
# MONAI's TransformerBlock always creates a cross-attention LayerNorm, unused without cross-attention:
# 12 x 1,536 of UNETR's parameters never get a gradient (they are in the paper-matching count).
UNUSED = {"unetr": "norm_cross_attn"}


def build_on_meta(name: str, size: int) -> nn.Module:
    """Shapes without memory or initialisation time: enough to count parameters (not SegFormer,
    whose builder calls .item())."""
    with torch.device("meta"):
        return build_baseline(name, {}, size)


@pytest.fixture(scope="module")
def built() -> Callable[[str], nn.Module]:
    """Each default baseline built once at SIZE px for the tests that only read it (SegFormer's
    initialisation alone takes about 10 s here); tests that train build their own."""
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_baseline(name, {}, SIZE)
        return cache[name]

    return get


def test_registry_holds_table1_rows_in_order() -> None:
    assert list(REGISTRY)[: len(TABLE1)] == TABLE1
    assert [REGISTRY[name].label for name in TABLE1] == ["U-Net", "UNETR", "RegUNet", "SegNet", "DeepLabV3+", "Segformer"]


@pytest.mark.parametrize("name", TABLE1, ids=[f"{n}@{COUNTED_AT.get(n, SIZE)}px" for n in TABLE1])
def test_parameter_count_within_5_percent_of_paper(name: str, built: Callable[[str], nn.Module]) -> None:
    size = COUNTED_AT.get(name, SIZE)
    count = parameter_count(build_on_meta(name, size) if name in COUNTED_AT else built(name))
    configuration = f"{get_baseline(name).description}, built for {size} px"
    assert abs(count - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.05, f"{configuration}: {count:,} parameters"
    assert count == EXACT_PARAMS[name], f"{configuration}: {count:,} parameters"


def test_unetr_count_grows_by_one_768_vector_per_16px_patch() -> None:
    at_512, at_1024 = parameter_count(build_on_meta("unetr", 512)), parameter_count(build_on_meta("unetr", 1024))
    assert at_1024 - at_512 == 768 * ((1024 // 16) ** 2 - (512 // 16) ** 2)
    assert abs(parameter_count(build_on_meta("unetr", 256)) - 91e6) / 91e6 < 0.05


@pytest.mark.parametrize(
    "name, hparams, size, message",
    [
        ("unetr", {}, 72, "input_size 72 is not a multiple of 16"),
        ("unetr", {"img_size": 128}, 64, "img_size 128 differs from input_size 64"),
        ("regunet", {}, 72, "input_size 72 is not a multiple of 16"),
        ("regunet", {"extract_levels": [0, 1]}, 64, "must include the bottom level"),
        ("segnet", {}, 16, "input_size 16 is below 32"),
        ("deeplabv3plus", {"encoder_name": "resnet18"}, 72, "input_size 72 is not a multiple of 16"),
        ("segformer", {"encoder_name": "mit_b0"}, 48, "input_size 48 is not a multiple of 32"),
    ],
)
def test_unusable_input_size_fails_at_build_naming_it(name: str, hparams: dict, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_baseline(name, hparams, size)


@pytest.mark.parametrize("name", TABLE1)
def test_forward_maps_image_to_one_logit_per_pixel(name: str, built: Callable[[str], nn.Module]) -> None:
    model = built(name).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, SIZE, SIZE))
    assert logits.shape == (2, 1, SIZE, SIZE)
    assert torch.isfinite(logits).all()


# 15-20 s or more on 2 shared CPU cores: UNETR updates 88M parameters, DeepLabV3+ 46M, and
# SegFormer spends ~10 s initialising.
TRAINED = [pytest.param(n, marks=pytest.mark.slow) if n in ("unetr", "deeplabv3plus", "segformer") else n for n in TABLE1]


@pytest.mark.parametrize("name", TRAINED)
def test_two_training_steps_with_the_engine_objective(name: str) -> None:
    torch.manual_seed(0)
    model = build_baseline(name, {}, SIZE)
    image = torch.rand(2, 3, SIZE, SIZE)
    mask = torch.zeros(2, 1, SIZE, SIZE)
    mask[..., 28:36, :] = 1  # a horizontal vessel
    objective = SegmentationObjective(reg_weight=0.01)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    set_train_mode(model)
    for _ in range(2):
        loss, _, reg = objective(model, model(image), mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        assert torch.isfinite(loss) and float(reg) == 0.0
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert no_grad == [n for n, _ in model.named_parameters() if UNUSED.get(name, "@") in n]
        not_finite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not not_finite, f"{name}: non-finite gradients in {not_finite[:5]}"
        optimizer.step()
    unchanged = [n for (n, p), old in zip(model.named_parameters(), before) if torch.equal(p, old)]
    assert unchanged == no_grad


def test_smp_models_see_imagenet_standardised_input() -> None:
    torch.manual_seed(0)
    model = build_baseline("deeplabv3plus", {"encoder_name": "resnet18"}, SIZE).eval()
    image = torch.rand(1, 3, SIZE, SIZE)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(image), model.network((image - mean) / std))


def test_missing_encoder_checkpoint_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "resnet101_imagenet.pth"
    with pytest.raises(FileNotFoundError, match="resnet101_imagenet.pth not found: saltbench downloads no weights"):
        build_baseline("deeplabv3plus", {"encoder_checkpoint": str(missing)}, SIZE)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_imagenet_checkpoint_loads_into_the_encoder(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18().state_dict()  # torchvision layout, classifier (fc) included
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(imagenet, path)
    else:
        save_file(imagenet, str(path))
    torch.manual_seed(2)
    model = build_baseline("deeplabv3plus", {"encoder_name": "resnet18", "encoder_checkpoint": str(path)}, SIZE)
    encoder = model.network.encoder.state_dict()
    assert set(encoder) == set(imagenet) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(encoder[key], imagenet[key]) for key in encoder)


def test_segformer_encoder_checkpoint_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(1)
    saved = build_baseline("segformer", {"encoder_name": "mit_b0"}, SIZE).network.encoder.state_dict()
    path = tmp_path / "mit_b0.pth"
    torch.save(saved, path)
    torch.manual_seed(2)
    loaded = build_baseline("segformer", {"encoder_name": "mit_b0", "encoder_checkpoint": str(path)}, SIZE)
    assert all(torch.equal(tensor, saved[key]) for key, tensor in loaded.network.encoder.state_dict().items())


def test_mismatched_encoder_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match="resnet18.pth does not fit the resnet34 encoder"):
        build_baseline("deeplabv3plus", {"encoder_name": "resnet34", "encoder_checkpoint": str(path)}, SIZE)


def _conv_gflops(conv: nn.Conv2d, size: int) -> float:
    """2 x MACs / 1e9 of a stride-1, same-padded convolution on one size x size image."""
    macs = conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] * size * size
    return 2 * macs / 1e9


def test_gflops_of_a_convolution_are_twice_its_macs() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert gflops_per_image(conv, 16) == {"gflops": pytest.approx(_conv_gflops(conv, 16)), "counter": FVCORE}


class _PoolUnpool(nn.Module):
    """SegNet's pattern: fvcore cannot trace max_unpool2d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled, indices = F.max_pool2d(self.conv(image), 2, 2, return_indices=True)
        return F.max_unpool2d(pooled, indices, 2, 2)


class _Attention(nn.Module):
    """fvcore leaves scaled_dot_product_attention uncounted; FlopCounterMode needs a formula for its
    CPU kernel."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = image.flatten(2).transpose(1, 2)  # B x pixels x channels
        q, k, v = (t.unsqueeze(1) for t in self.qkv(tokens).chunk(3, dim=-1))  # one head
        return F.scaled_dot_product_attention(q, k, v)


def test_gflops_fall_back_to_flop_counter_mode_where_fvcore_cannot_trace() -> None:
    model = _PoolUnpool()
    assert gflops_per_image(model, 16) == {"gflops": pytest.approx(_conv_gflops(model.conv, 16)), "counter": FLOP_COUNTER_MODE}


def test_gflops_fall_back_where_fvcore_would_miss_attention() -> None:
    tokens, dim = 8 * 8, 3
    expected_macs = tokens * dim * 3 * dim + 2 * tokens * tokens * dim  # qkv projection, QK^T, attention x V
    assert gflops_per_image(_Attention(dim), 8) == {"gflops": pytest.approx(2 * expected_macs / 1e9), "counter": FLOP_COUNTER_MODE}


def test_fvcore_and_flop_counter_mode_agree_on_a_unet() -> None:
    model = build_baseline("unet", {"channels": [8, 16, 32], "num_res_units": 1}, SIZE).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.rand(1, 3, SIZE, SIZE))
    model.train()
    result = gflops_per_image(model, SIZE)
    assert result == {"gflops": pytest.approx(counter.get_total_flops() / 1e9, rel=1e-9), "counter": FVCORE}
    assert model.training


@pytest.mark.parametrize("name", TABLE1)
def test_every_baseline_has_a_cost(name: str, built: Callable[[str], nn.Module]) -> None:
    result = gflops_per_image(built(name), SIZE)
    assert result["gflops"] > 0
    assert result["counter"] == (FLOP_COUNTER_MODE if name == "segnet" else FVCORE)
