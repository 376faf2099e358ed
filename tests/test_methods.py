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
from benchmark.cost.parameters import OTHER, count_by_component, count_parameters
from benchmark.errors import UnknownNameError
from methods import (
    REGISTRY,
    AdaptedLayer,
    Method,
    adapter_state_dict,
    apply_method,
    get_method,
    merge_model,
    regularization,
)
from methods.base import thin_svd
from methods.dora import DoRALayer
from methods.lora import LoRALayer
from methods.pissa import PiSSALayer
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
        if name == "magnitude":
            p.mul_(torch.rand_like(p) + 0.5)
        elif name == "alpha":
            p.uniform_(-0.5, 2.0)
        elif name == "beta":
            p.copy_(torch.randn_like(p) * layer.sigma[: p.numel()].mean())
        elif name in ("lora_A", "lora_B"):
            p.normal_(0.0, 0.3)  # B A about as large as W: a real change that keeps activations tame
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


def direct_salt_weight(layer: SALTLayer, base: nn.Module) -> torch.Tensor:
    """Eq. 2-4 literally, in float64: full SVD, full r_max x r_max Sigma', element-wise ReLU.
    Singular pairs take the layer's sign convention (largest |entry| of each U column positive)."""
    u, s, vh = torch.linalg.svd(flat(base), full_matrices=False)
    flip = torch.where(u[u.abs().argmax(dim=0), torch.arange(u.shape[1])] < 0, -1.0, 1.0).double()
    u, vh = u * flip, vh * flip[:, None]
    r_max, r = s.numel(), layer.r
    sigma_new = torch.zeros(r_max, r_max, dtype=torch.float64)
    if r:
        sigma_new[:r, :r] = torch.diag(layer.alpha.double() * s[:r] + layer.beta.double())
    if r < r_max:
        sigma_new[r:, r:] = torch.diag(s[r:]) + layer.X.double() @ layer.Y.double()
    assert (sigma_new[sigma_new != 0] < 0).any(), "the test must exercise the ReLU"
    return (u @ F.relu(sigma_new) @ vh).reshape(base.weight.shape)


# (sv_rank, d_lora): the last pair has d_lora above r' (linear r' = 6, conv r' = 2), as Fig. 4a's
# "SALT rank 700 + LoRA rank 256" has on a 768-wide layer.
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize(("sv_rank", "rank"), [(3, 2), (0.5, 2), (0, 2), (1.0, 2), (0.75, 9)])
def test_salt_weight_matches_eq_2_to_4(kind: str, sv_rank: int | float, rank: int) -> None:
    base = make_base(kind)
    layer = SALTLayer(base, rank=rank, sv_rank=sv_rank)
    randomise(layer)
    if layer.X is not None:
        assert layer.X.shape == (layer.sigma.numel() - layer.r, rank) and layer.Y.shape == (rank, layer.sigma.numel() - layer.r)
    expected = direct_salt_weight(layer, base).float()
    torch.testing.assert_close(layer.adapted_weight(), expected, atol=ATOL, rtol=RTOL)
    x = make_input(kind)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_salt_gradients_match_direct_eq_4(kind: str) -> None:
    """The folded rebuild (diagonal top block, dense r' x r' block only) differentiates like the literal one."""
    base = make_base(kind).double()
    layer = SALTLayer(base, rank=3, sv_rank=4)
    randomise(layer)
    x = make_input(kind).double()
    torch.manual_seed(5)
    upstream = torch.randn_like(layer(x))
    (layer(x) * upstream).sum().backward()
    fast = {name: p.grad.clone() for name, p in layer.trainable_state().items()}
    for p in layer.parameters():
        p.grad = None
    (reference_forward(base, direct_salt_weight(layer, base), x) * upstream).sum().backward()
    for name, p in layer.trainable_state().items():
        torch.testing.assert_close(fast[name], p.grad, atol=1e-10, rtol=1e-10, msg=name)


def test_svd_signs_are_canonical() -> None:
    """Each singular pair is flipped so U's largest-magnitude entry per column is positive: an
    adapter whose X Y mixes singular directions then means the same weight on any LAPACK."""
    torch.manual_seed(4)
    matrix = torch.randn(30, 12)
    for candidate in (matrix, -matrix):
        u, sigma, vh = thin_svd(candidate)
        peaks = u.gather(0, u.abs().argmax(dim=0, keepdim=True))
        assert (peaks > 0).all()
        torch.testing.assert_close((u * sigma) @ vh, candidate, atol=1e-5, rtol=0)
    (u, _, vh), (u_neg, _, vh_neg) = thin_svd(matrix), thin_svd(-matrix)
    torch.testing.assert_close(u_neg, u, atol=1e-6, rtol=0)
    torch.testing.assert_close(vh_neg, -vh, atol=1e-6, rtol=0)


def test_svd_buffers_move_with_the_model_but_stay_out_of_state_dict() -> None:
    model, frozen = toy(), toy()
    apply_method(model, {"name": "salt", "rank": 2, "targets": ALL_TARGETS}, COMPONENTS)
    assert set(model.state_dict()) == set(frozen.state_dict()) | set(adapter_state_dict(model))
    model.double()
    layer = model.blocks[0].attn.qkv
    assert layer.U.dtype == layer.Vh.dtype == layer.sigma.dtype == torch.float64


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
    official = torch.sqrt(((1 - layer.alpha.double()) ** 2).sum()) + torch.sqrt((layer.beta.double() ** 2).sum())
    torch.testing.assert_close(layer.regularization(), official.float(), atol=ATOL, rtol=RTOL)
    layer.reg = "eq5"
    torch.testing.assert_close(layer.regularization(), torch.sqrt(((values - s) ** 2).sum()).float(), atol=ATOL, rtol=RTOL)
    x = make_input(kind)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)


def test_svd_reg_is_checked() -> None:
    with pytest.raises(ValueError, match=r"S-SAM reg must be one of \['eq5', 'official'\], got 'l2'"):
        SVDLayer(make_base("linear"), "blocks.0.attn.qkv", reg="l2")


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


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_dora_matches_formula(kind: str) -> None:
    base = make_base(kind)
    layer = DoRALayer(base, rank=2, lora_alpha=4)
    torch.testing.assert_close(layer.adapted_weight(), base.weight.detach(), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer.magnitude.detach(), flat(base).norm(dim=1).float(), atol=ATOL, rtol=RTOL)
    randomise(layer)
    direction = flat(base) + 2.0 * layer.lora_B.double() @ layer.lora_A.double()
    expected = (layer.magnitude.double()[:, None] * direction / direction.norm(dim=1, keepdim=True)).reshape(base.weight.shape)
    torch.testing.assert_close(layer.adapted_weight(), expected.float(), atol=ATOL, rtol=RTOL)
    x = make_input(kind)
    torch.testing.assert_close(layer(x), reference_forward(base, expected.float(), x), atol=ATOL, rtol=RTOL)


def test_dora_norm_is_detached_as_in_the_paper() -> None:
    """DoRA 4.3: d/dm is direction/||direction||, and the norm passes no gradient to A, B."""
    base = make_base("linear").double()
    layer = DoRALayer(base, rank=2)
    randomise(layer)
    layer.adapted_weight().sum().backward()
    direction = (base.weight + layer.lora_B @ layer.lora_A).detach()
    torch.testing.assert_close(layer.magnitude.grad, (direction / direction.norm(dim=1, keepdim=True)).sum(dim=1))
    scale = (layer.magnitude / direction.norm(dim=1)).detach()
    torch.testing.assert_close(layer.lora_B.grad, (scale[:, None] * torch.ones_like(direction)) @ layer.lora_A.detach().T)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_pissa_starts_on_principal_part_and_matches_formula(kind: str) -> None:
    base = make_base(kind)
    layer = PiSSALayer(base, rank=3, lora_alpha=6)
    x = make_input(kind)
    assert torch.equal(layer.adapted_weight(), base.weight), "PiSSA must start exactly at the frozen weight"
    torch.testing.assert_close(layer(x), base(x), atol=1e-6, rtol=0)
    u, s, vh = torch.linalg.svd(flat(base), full_matrices=False)
    principal = (u[:, :3] * s[:3]) @ vh[:3]
    torch.testing.assert_close(2.0 * layer.lora_B.double() @ layer.lora_A.double(), principal, atol=ATOL, rtol=RTOL)
    residual = flat(base) - principal
    randomise(layer)
    expected = (residual + 2.0 * layer.lora_B.double() @ layer.lora_A.double()).reshape(base.weight.shape).float()
    torch.testing.assert_close(layer.adapted_weight(), expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)


# --- merge -----------------------------------------------------------------------------------------

BUILDERS = {
    "svd": lambda base: SVDLayer(base),
    "lora": lambda base: LoRALayer(base, rank=3, lora_alpha=6),
    "salt": lambda base: SALTLayer(base, rank=2, sv_rank=3),
    "dora": lambda base: DoRALayer(base, rank=3, lora_alpha=6),
    "pissa": lambda base: PiSSALayer(base, rank=3, lora_alpha=6),
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


@pytest.mark.parametrize("name", ["salt", "svd", "lora", "dora", "pissa"])
def test_merge_model_folds_every_adapted_layer(name: str) -> None:
    model, x = toy(), toy_input()
    apply_method(model, {"name": name, "targets": ALL_TARGETS}, COMPONENTS)
    for module in model.modules():
        if isinstance(module, AdaptedLayer):
            randomise(module)
    expected = model(x).detach()
    assert merge_model(model) is model
    assert not any(isinstance(m, AdaptedLayer) for m in model.modules())
    torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=RTOL)
    assert count_parameters(model)[1] == count_parameters(toy())[1]
    assert [type(m) for m in model.modules()] == [type(m) for m in toy().modules()]


# --- apply_method on a model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "adapter_names"),
    [
        ({"name": "salt", "rank": 2, "targets": ALL_TARGETS}, {"alpha", "beta", "X", "Y"}),
        ({"name": "lora", "rank": 2, "targets": ALL_TARGETS}, {"lora_A", "lora_B"}),
        ({"name": "svd", "targets": ALL_TARGETS}, {"alpha", "beta"}),
        ({"name": "dora", "rank": 2, "targets": ALL_TARGETS}, {"lora_A", "lora_B", "magnitude"}),
        ({"name": "pissa", "rank": 2, "targets": ALL_TARGETS}, {"lora_A", "lora_B"}),
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
    check({"name": "dora", "rank": 3, "targets": ALL_TARGETS}, lambda o, i: 3 * (o + i) + o)
    check({"name": "pissa", "rank": 3, "targets": ALL_TARGETS}, lambda o, i: 3 * (o + i))


def salt_layer_count(out_dim: int, in_dim: int, r: int, d_lora: int) -> int:
    """2 r + 2 r' d_lora, with r' = min(out, in) - r."""
    return 2 * r + 2 * (min(out_dim, in_dim) - r) * d_lora


def test_count_by_component_matches_closed_forms_for_a_fig_4a_point() -> None:
    """A Fig. 4a point: SALT ranks per component (MHA, MLP, neck) x one LoRA rank, here with
    d_lora above r' on the MLP (r' = 24 - 20 = 4 < 6) as "SALT rank 700 + LoRA rank 256" has."""
    model = toy()
    spec = {"name": "salt", "rank": 6, "targets": ALL_TARGETS,
            "sv_ranks": {"attn.qkv": 12, "attn.proj": 12, "mlp": 20, "neck": 5}, "ranks": {"neck": 2}}
    apply_method(model, spec, COMPONENTS)
    model.blocks[0].norm.weight.requires_grad_(True)
    expected = {
        "attn.qkv": 2 * salt_layer_count(72, 24, 12, 6),
        "attn.proj": 2 * salt_layer_count(24, 24, 12, 6),
        "mlp": 2 * (salt_layer_count(48, 24, 20, 6) + salt_layer_count(24, 48, 20, 6)),
        "neck": salt_layer_count(8, 24 * 9, 5, 2),
        OTHER: 24,
    }
    assert count_by_component(model, COMPONENTS) == expected
    assert sum(expected.values()) == count_parameters(model)[0]


def test_count_by_component_for_lora_svd_and_full() -> None:
    lora = toy()
    apply_method(lora, {"name": "lora", "rank": 2, "ranks": {"mlp": 5}}, COMPONENTS)
    assert count_by_component(lora, COMPONENTS) == {
        "attn.qkv": 2 * 2 * (72 + 24), "attn.proj": 2 * 2 * (24 + 24), "mlp": 2 * 5 * ((48 + 24) + (24 + 48)),
        "neck": 0, OTHER: 0,
    }
    svd = toy()
    apply_method(svd, {"name": "svd", "targets": ["neck"]}, COMPONENTS)
    assert count_by_component(svd, COMPONENTS)["neck"] == 2 * 8
    full = toy()
    apply_method(full, {"name": "full"}, COMPONENTS)
    counts = count_by_component(full, COMPONENTS)
    assert counts["attn.qkv"] == 2 * (72 * 24 + 72) and counts["neck"] == 8 * 24 * 9 + 8
    assert counts[OTHER] == 2 * 2 * 24  # the two LayerNorms


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
    assert {"frozen", "full", "svd", "lora", "salt", "dora", "pissa"} <= set(REGISTRY)
    with pytest.raises(UnknownNameError) as info:
        get_method("adalora")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    for name in REGISTRY:
        assert name in str(info.value)
    with pytest.raises(UnknownNameError, match="salt"):
        apply_method(toy(), {"name": "adalora"}, COMPONENTS)


@pytest.mark.parametrize(
    ("spec", "components", "message"),
    [
        ({"name": "salt", "targets": ["attn.qkv", "decoder"]}, COMPONENTS, r"'decoder' is not defined.*known components"),
        ({"name": "salt", "targets": ["neck"]}, {**COMPONENTS, "neck": r"neck\.7"}, r"'neck'.*matches no module"),
        ({"name": "salt", "targets": ["mlp"]}, {**COMPONENTS, "mlp": r"blocks\.\d+\.mlp"}, r"'blocks\.0\.mlp' is Module, not nn\.Linear"),
        ({"name": "salt", "targets": "mlp"}, COMPONENTS, "non-empty list"),
        ({"name": "salt", "targets": ["mlp", "mlp"]}, COMPONENTS, "more than once"),
        ({"name": "salt", "sv_rnak": 3}, COMPONENTS, r"'sv_rnak'.*valid keys: name, blocks, init, rank, ranks, sv_energy, sv_rank, sv_ranks, targets"),
        ({"name": "frozen", "rank": 4}, COMPONENTS, r"unknown spec key\(s\) \['rank'\]"),
        ({"name": "lora", "ranks": {"neck": 2}}, COMPONENTS, r"ranks: component\(s\) \['neck'\] are not among targets"),
        ({"name": "salt", "sv_rank": 30}, COMPONENTS, r"blocks\.0\.attn\.qkv: sv_rank 30 .*r_max = 24"),
        ({"name": "pissa", "rank": 9, "targets": ["neck"]}, COMPONENTS, r"neck\.0: PiSSA rank 9 exceeds r_max .* = 8"),
        ({"name": "dora", "dropout": 0.1}, COMPONENTS, r"'dropout'.*valid keys: name, blocks, lora_alpha, rank, ranks, targets"),
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


PLUGIN_SOURCE = """
from torch import nn
from methods import Method


def apply(model: nn.Module, components: dict, spec: dict) -> list:
    return []


METHOD = Method(name="{name}", description="test plugin", hparams={{}}, apply=apply)
"""


def test_plugins_from_environment_file_and_module(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plugin_by_file.py").write_text(PLUGIN_SOURCE.format(name="by-file"))
    (tmp_path / "plugin_by_module.py").write_text(PLUGIN_SOURCE.format(name="by-module"))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("by-file", "by-module"):
        monkeypatch.delitem(REGISTRY, name, raising=False)
    monkeypatch.setenv(methods.PLUGINS_ENV, f"{tmp_path / 'plugin_by_file.py'}, plugin_by_module")
    assert methods.load_plugins() == ["by-file", "by-module"]
    assert methods.load_plugins() == ["by-file", "by-module"], "loading twice must not clash with itself"
    assert get_method("by-file").description == "test plugin"
    for name in ("by-file", "by-module"):
        monkeypatch.delitem(REGISTRY, name)


def test_bad_plugins_fail_clearly(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"SALTBENCH_PLUGINS: plugin file not found: .*missing\.py"):
        methods.load_plugins(str(tmp_path / "missing.py"))
    with pytest.raises(ImportError, match=r"SALTBENCH_PLUGINS: cannot import plugin module 'no_such_plugin_module'"):
        methods.load_plugins("no_such_plugin_module")
    (tmp_path / "not_a_method.py").write_text("VALUE = 1\n")
    with pytest.raises(TypeError, match=r"not_a_method\.py' must define METHOD"):
        methods.load_plugins(str(tmp_path / "not_a_method.py"))


def test_a_method_without_a_label_names_a_row_by_the_settings_that_set_it_apart() -> None:
    plugin = Method(name="chgain", description="", hparams={"targets": ["mlp"], "gain": 1.0, "rank": 4, "bias": False},
                    apply=lambda model, components, spec: [])
    assert plugin.row_label({"id": "a", "name": "chgain", "gain": 0.5, "rank": 8, "bias": True, "targets": ["mlp", "attn.qkv"]}) \
        == "chgain gain=0.5 bias=True"  # rank has its own column; lists are left out
    assert plugin.row_label({"name": "chgain", "gain": 1.0}) == "chgain"
    assert plugin.row_label({"name": "chgain", "gain": 0.5, "label": "Gain"}) == "Gain"
