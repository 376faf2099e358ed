"""PEFT methods against direct implementations of their formulas, plus the plugin contract."""
from __future__ import annotations

import math
import re
from importlib import metadata

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import methods
from methods import (
    REGISTRY,
    AdaptedLayer,
    Method,
    UnknownMethodError,
    adapter_state_dict,
    apply_method,
    count_parameters,
    get_method,
    merge_model,
    regularization,
)
from methods.lora import LoRALayer
from methods.salt import SALTLayer
from methods.svd import SVDLayer

ATOL = 1e-5
RTOL = 1e-5  # float32 outputs of size ~10 carry rounding of ~1e-6 relative


def make_base(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(24, 40) if kind == "linear" else nn.Conv2d(6, 8, 3, padding=1, stride=2)


def make_input(kind: str) -> torch.Tensor:
    return torch.randn(3, 5, 24) if kind == "linear" else torch.randn(2, 6, 9, 9)


def reference_forward(base: nn.Module, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if isinstance(base, nn.Linear):
        return F.linear(x, weight, base.bias)
    return F.conv2d(x, weight, base.bias, base.stride, base.padding, base.dilation)


def flat(base: nn.Module) -> torch.Tensor:
    return base.weight.detach().double().reshape(base.weight.shape[0], -1)


@torch.no_grad()
def randomise(layer: AdaptedLayer) -> None:
    """Move every adapter tensor away from its init, with enough spread that ReLU clips entries."""
    for name, p in layer.trainable_state().items():
        if name == "alpha":
            p.uniform_(-0.5, 2.0)
        elif name == "beta":
            p.copy_(torch.randn_like(p) * layer.sigma[: p.numel()].mean())
        else:
            p.normal_(0.0, 0.7)


class ToyBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, 2 * dim)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.attn.qkv(self.norm(x)).chunk(3, dim=-1)
        x = x + self.attn.proj(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1) @ v)
        return x + self.mlp.fc2(self.mlp.act(self.mlp.fc1(x)))


class Toy(nn.Module):
    """Names like a ViT encoder: blocks.N.attn.qkv, blocks.N.attn.proj, blocks.N.mlp.fc1/fc2, neck.0."""

    def __init__(self, dim: int = 24) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ToyBlock(dim) for _ in range(2))
        self.neck = nn.Sequential(nn.Conv2d(dim, 8, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        side = math.isqrt(x.shape[1])
        return self.neck(x.transpose(1, 2).reshape(x.shape[0], -1, side, side))


COMPONENTS = {
    "attn.qkv": r"blocks\.\d+\.attn\.qkv",
    "attn.proj": r"blocks\.\d+\.attn\.proj",
    "mlp": r"blocks\.\d+\.mlp\.fc[12]",
    "neck": r"neck\.0",
}
ALL_TARGETS = ["attn.qkv", "attn.proj", "mlp", "neck"]
ADAPTED = [f"blocks.{i}.{m}" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")] + ["neck.0"]


def toy() -> Toy:
    torch.manual_seed(1)
    return Toy()


def toy_input() -> torch.Tensor:
    return torch.randn(2, 16, 24)


# --- SALT against eq. 2-5 -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("sv_rank", [3, 0.5, 0, 1.0])
def test_salt_weight_matches_eq_2_to_4(kind: str, sv_rank: int | float) -> None:
    base = make_base(kind)
    layer = SALTLayer(base, rank=2, sv_rank=sv_rank)
    randomise(layer)
    u, s, vh = torch.linalg.svd(flat(base), full_matrices=False)
    r_max, r = s.numel(), layer.r
    sigma_new = torch.zeros(r_max, r_max, dtype=torch.float64)
    if r:
        sigma_new[:r, :r] = torch.diag(layer.alpha.double() * s[:r] + layer.beta.double())
    if r < r_max:
        sigma_new[r:, r:] = torch.diag(s[r:]) + layer.X.double() @ layer.Y.double()
    assert (sigma_new[sigma_new != 0] < 0).any(), "the test must exercise the ReLU"
    expected = (u @ F.relu(sigma_new) @ vh).reshape(base.weight.shape).float()
    torch.testing.assert_close(layer.adapted_weight(), expected, atol=ATOL, rtol=RTOL)
    x = make_input(kind)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_salt_regularizer_is_eq_5(kind: str) -> None:
    base = make_base(kind)
    layer = SALTLayer(base, rank=2, sv_rank=4)
    randomise(layer)
    s = torch.linalg.svdvals(flat(base))[:4].float()
    scale_shift = torch.sqrt(((layer.alpha * s + layer.beta - s) ** 2).sum())
    low_rank = torch.sqrt(((layer.X @ layer.Y) ** 2).sum())
    torch.testing.assert_close(layer.regularization(), scale_shift + low_rank, atol=ATOL, rtol=RTOL)


def test_salt_rank_split_and_edge_cases() -> None:
    base = make_base("linear")
    assert SALTLayer(base, sv_rank=0.5).r == 12
    assert SALTLayer(base, sv_rank=0.3).r == 7
    full_scale = SALTLayer(base, rank=4, sv_rank=24)
    assert full_scale.X is None and full_scale.Y is None and set(full_scale.trainable_state()) == {"alpha", "beta"}
    no_scale = SALTLayer(base, rank=4, sv_rank=0)
    assert no_scale.alpha is None and set(no_scale.trainable_state()) == {"X", "Y"}
    assert no_scale.X.shape == (24, 4) and no_scale.Y.shape == (4, 24)
    with pytest.raises(ValueError, match=r"blk\.fc.*r_max = 24"):
        SALTLayer(base, sv_rank=25, layer_name="blk.fc")
    with pytest.raises(ValueError, match=r"blk\.fc.*exceeds r' .*r_max = 24"):
        SALTLayer(base, rank=13, sv_rank=12, layer_name="blk.fc")
    with pytest.raises(ValueError, match="fractional sv_rank"):
        SALTLayer(base, sv_rank=1.5)
    with pytest.raises(ValueError, match="init"):
        SALTLayer(base, init="zeros")


def test_salt_identity_init_keeps_weight_and_paper_init_is_official() -> None:
    for kind in ("linear", "conv"):
        base = make_base(kind)
        identity = SALTLayer(base, rank=2, sv_rank=3, init="identity")
        torch.testing.assert_close(identity.adapted_weight(), base.weight.detach(), atol=ATOL, rtol=0)
        assert identity.X.abs().sum() > 0 and identity.Y.abs().sum() == 0
    torch.manual_seed(3)
    paper = SALTLayer(nn.Linear(300, 200), rank=64, sv_rank=0.5)
    assert torch.equal(paper.alpha, torch.ones(100)) and torch.equal(paper.beta, torch.zeros(100))
    for factor in (paper.X, paper.Y):
        assert abs(factor.std().item() - 0.01) < 0.001 and abs(factor.mean().item()) < 0.001


def test_salt_svd_is_computed_once_in_float64() -> None:
    base = make_base("linear")
    layer = SALTLayer(base, rank=2, sv_rank=3)
    u, s, vh = torch.linalg.svd(flat(base), full_matrices=False)
    torch.testing.assert_close(layer.sigma, s.float(), atol=1e-6, rtol=0)
    before = layer.adapted_weight().detach().clone()
    with torch.no_grad():
        layer.weight.zero_()
    torch.testing.assert_close(layer.adapted_weight(), before, atol=0, rtol=0)


# --- S-SAM and LoRA against their formulas ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_svd_matches_formula(kind: str) -> None:
    base = make_base(kind)
    layer = SVDLayer(base)
    torch.testing.assert_close(layer.adapted_weight(), base.weight.detach(), atol=ATOL, rtol=0)
    randomise(layer)
    u, s, vh = torch.linalg.svd(flat(base), full_matrices=False)
    values = layer.alpha.double() * s + layer.beta.double()
    assert (values < 0).any(), "the test must exercise the ReLU"
    expected = (u @ torch.diag(F.relu(values)) @ vh).reshape(base.weight.shape).float()
    torch.testing.assert_close(layer.adapted_weight(), expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer.regularization(), torch.sqrt(((values - s) ** 2).sum()).float(), atol=ATOL, rtol=RTOL)
    x = make_input(kind)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_lora_matches_formula(kind: str) -> None:
    base = make_base(kind)
    layer = LoRALayer(base, rank=2, lora_alpha=8)
    assert torch.equal(layer.adapted_weight(), base.weight.detach())
    bound = 1 / math.sqrt(layer.lora_A.shape[1])
    assert layer.lora_A.abs().max() <= bound and torch.equal(layer.lora_B, torch.zeros_like(layer.lora_B))
    randomise(layer)
    delta = (layer.lora_B @ layer.lora_A).reshape(base.weight.shape)
    expected = base.weight.detach() + 4.0 * delta
    torch.testing.assert_close(layer.adapted_weight(), expected, atol=ATOL, rtol=RTOL)
    x = make_input(kind)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)
    assert layer.regularization().item() == 0.0


def test_lora_dropout_acts_on_branch_only() -> None:
    base = make_base("linear")
    layer = LoRALayer(base, rank=2, dropout=0.5)
    x = make_input("linear")
    layer.train()
    torch.testing.assert_close(layer(x), base(x), atol=ATOL, rtol=RTOL)
    randomise(layer)
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), reference_forward(base, layer.adapted_weight(), x), atol=ATOL, rtol=RTOL)


# --- merge -----------------------------------------------------------------------------------------

BUILDERS = {
    "svd": lambda base: SVDLayer(base),
    "lora": lambda base: LoRALayer(base, rank=3, lora_alpha=6),
    "salt": lambda base: SALTLayer(base, rank=2, sv_rank=3),
}


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("method", sorted(BUILDERS))
def test_merge_gives_plain_layer_with_same_output(kind: str, method: str) -> None:
    base = make_base(kind)
    layer = BUILDERS[method](base)
    randomise(layer)
    merged = layer.merge()
    assert type(merged) is type(base)
    assert merged.weight.grad_fn is None and not merged.weight.requires_grad
    x = make_input(kind)
    torch.testing.assert_close(merged(x), layer(x).detach(), atol=ATOL, rtol=RTOL)
    assert not torch.allclose(merged.weight, base.weight), "randomised adapters must change the weight"


def test_merge_model_folds_every_adapted_layer() -> None:
    model, x = toy(), toy_input()
    apply_method(model, {"name": "salt", "rank": 2, "targets": ALL_TARGETS}, COMPONENTS)
    for module in model.modules():
        if isinstance(module, AdaptedLayer):
            randomise(module)
    expected = model(x).detach()
    assert merge_model(model) is model
    assert not any(isinstance(m, AdaptedLayer) for m in model.modules())
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=RTOL)


# --- apply_method on a model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "adapter_names"),
    [
        ({"name": "salt", "rank": 2, "targets": ALL_TARGETS}, {"alpha", "beta", "X", "Y"}),
        ({"name": "lora", "rank": 2, "targets": ALL_TARGETS}, {"lora_A", "lora_B"}),
        ({"name": "svd", "targets": ALL_TARGETS}, {"alpha", "beta"}),
    ],
)
def test_gradients_reach_exactly_the_adapters(spec: dict, adapter_names: set[str]) -> None:
    model = toy()
    adapted = apply_method(model, spec, COMPONENTS)
    assert adapted == ADAPTED
    loss = model(toy_input()).square().mean() + regularization(model)
    loss.backward()
    expected = {f"{module}.{name}" for module in ADAPTED for name in adapter_names}
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert with_grad == expected and trainable == expected
    assert set(adapter_state_dict(model)) == expected


def test_adapter_state_dict_restores_a_trained_model() -> None:
    trained, x = toy(), toy_input()
    spec = {"name": "salt", "rank": 2, "targets": ALL_TARGETS}
    apply_method(trained, spec, COMPONENTS)
    for module in trained.modules():
        if isinstance(module, AdaptedLayer):
            randomise(module)
    fresh = toy()
    apply_method(fresh, spec, COMPONENTS)
    assert not torch.allclose(fresh(x), trained(x))
    result = fresh.load_state_dict(adapter_state_dict(trained), strict=False)
    assert result.unexpected_keys == []
    torch.testing.assert_close(fresh(x), trained(x), atol=ATOL, rtol=RTOL)


def test_parameter_counts_match_closed_forms() -> None:
    shapes = {"attn.qkv": (72, 24), "attn.proj": (24, 24), "mlp.fc1": (48, 24), "mlp.fc2": (24, 48)}
    layers = [shape for _ in range(2) for shape in shapes.values()] + [(8, 24 * 9)]
    total = count_parameters(toy())[1]

    def check(spec: dict, per_layer) -> None:
        model = toy()
        apply_method(model, spec, COMPONENTS)
        trainable = sum(per_layer(out_dim, in_dim) for out_dim, in_dim in layers)
        assert count_parameters(model) == (trainable, total + trainable)

    def salt(out_dim: int, in_dim: int) -> int:
        r_max = min(out_dim, in_dim)
        r = math.floor(0.25 * r_max + 0.5)
        return 2 * r + 2 * (r_max - r) * 3

    check({"name": "salt", "rank": 3, "sv_rank": 0.25, "targets": ALL_TARGETS}, salt)
    check({"name": "lora", "rank": 3, "targets": ALL_TARGETS}, lambda o, i: 3 * (o + i))
    check({"name": "svd", "targets": ALL_TARGETS}, lambda o, i: 2 * min(o, i))


def test_per_component_overrides() -> None:
    model = toy()
    spec = {"name": "salt", "rank": 2, "sv_rank": 0.5, "targets": ALL_TARGETS, "ranks": {"mlp": 8}, "sv_ranks": {"neck": 2}}
    apply_method(model, spec, COMPONENTS)
    assert model.blocks[0].mlp.fc1.X.shape == (12, 8) and model.blocks[1].mlp.fc2.d_lora == 8
    assert model.blocks[0].attn.qkv.d_lora == 2 and model.blocks[0].attn.qkv.r == 12
    assert model.neck[0].r == 2 and model.neck[0].X.shape == (6, 2)
    lora = toy()
    apply_method(lora, {"name": "lora", "rank": 2, "ranks": {"attn.proj": 5}}, COMPONENTS)
    assert lora.blocks[0].attn.proj.lora_A.shape == (5, 24) and lora.blocks[0].attn.proj.scaling == 1.0
    assert lora.blocks[0].attn.qkv.lora_A.shape == (2, 24)


def test_default_targets_leave_neck_alone() -> None:
    model = toy()
    adapted = apply_method(model, {"name": "lora"}, COMPONENTS)
    assert adapted == [name for name in ADAPTED if not name.startswith("neck")]
    assert type(model.neck[0]) is nn.Conv2d and not model.neck[0].weight.requires_grad


def test_frozen_leaves_model_bit_identical() -> None:
    model, reference, x = toy(), toy(), toy_input()
    assert apply_method(model, {"name": "frozen"}, COMPONENTS) == []
    assert count_parameters(model)[0] == 0
    assert repr(model) == repr(reference)
    for (name, value), (_, ref) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(value, ref), name
    assert torch.equal(model(x), reference(x))
    assert regularization(model).item() == 0.0


def test_full_makes_everything_trainable() -> None:
    model = toy()
    assert apply_method(model, {"name": "full"}, COMPONENTS) == []
    trainable, total = count_parameters(model)
    assert trainable == total > 0
    assert not any(isinstance(m, AdaptedLayer) for m in model.modules())


# --- errors ------------------------------------------------------------------------------------------


def test_unknown_method_lists_known_names() -> None:
    assert {"frozen", "full", "svd", "lora", "salt"} <= set(REGISTRY)
    with pytest.raises(UnknownMethodError) as info:
        get_method("dora")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    for name in REGISTRY:
        assert name in str(info.value)
    with pytest.raises(UnknownMethodError, match="salt"):
        apply_method(toy(), {"name": "dora"}, COMPONENTS)


@pytest.mark.parametrize(
    ("spec", "components", "message"),
    [
        ({"name": "salt", "targets": ["attn.qkv", "decoder"]}, COMPONENTS, r"'decoder' is not defined.*known components"),
        ({"name": "salt", "targets": ["neck"]}, {**COMPONENTS, "neck": r"neck\.7"}, r"'neck'.*matches no module"),
        ({"name": "salt", "targets": ["mlp"]}, {**COMPONENTS, "mlp": r"blocks\.\d+\.mlp"}, r"'blocks\.0\.mlp' is Module, not nn\.Linear"),
        ({"name": "salt", "targets": "mlp"}, COMPONENTS, "non-empty list"),
        ({"name": "salt", "targets": ["mlp", "mlp"]}, COMPONENTS, "more than once"),
        ({"name": "salt", "sv_rnak": 3}, COMPONENTS, r"'sv_rnak'.*valid keys: name, init, rank, ranks, sv_rank, sv_ranks, targets"),
        ({"name": "frozen", "rank": 4}, COMPONENTS, r"unknown spec key\(s\) \['rank'\]"),
        ({"name": "lora", "ranks": {"neck": 2}}, COMPONENTS, r"ranks: component\(s\) \['neck'\] are not among targets"),
        ({"name": "salt", "sv_rank": 30}, COMPONENTS, r"blocks\.0\.attn\.qkv: sv_rank 30 .*r_max = 24"),
        ({"name": "salt", "rank": 16, "targets": ["neck"]}, COMPONENTS, r"neck\.0: .*exceeds r'.*r_max = 8"),
        ({"rank": 4}, COMPONENTS, "'name' key"),
    ],
)
def test_bad_specs_fail_clearly_and_leave_model_untouched(spec: dict, components: dict, message: str) -> None:
    model = toy()
    with pytest.raises(ValueError, match=message):
        apply_method(model, spec, components)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, AdaptedLayer) for m in model.modules())


def test_grouped_conv_is_refused() -> None:
    with pytest.raises(ValueError, match=r"dw: only Conv2d with groups=1"):
        SALTLayer(nn.Conv2d(4, 4, 3, groups=2), layer_name="dw")


def test_entry_point_methods_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = Method(name="toy-plugin", description="test plugin", hparams={}, apply=lambda model, components, spec: [])

    class FakeEntryPoint:
        name, value = "toy-plugin", "toy_pkg:METHOD"

        def load(self) -> Method:
            return plugin

    monkeypatch.setattr(metadata, "entry_points", lambda group: [FakeEntryPoint()] if group == methods.ENTRY_POINT_GROUP else [])
    monkeypatch.delitem(REGISTRY, "toy-plugin", raising=False)
    assert methods.load_entry_points() == ["toy-plugin"]
    assert get_method("toy-plugin") is plugin
    monkeypatch.delitem(REGISTRY, "toy-plugin")
    with pytest.raises(ValueError, match=re.escape("already registered as 'salt'")):
        methods.register(Method(name="salt", description="", hparams={}, apply=plugin.apply))
