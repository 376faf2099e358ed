"""SALT's relatives against direct implementations of their papers' formulas: MiLoRA (minor
singular components), SVFT (sparse M on the singular vectors), and SALT with a rank per layer
chosen from the spectrum (sv_energy)."""
from __future__ import annotations

import pytest
import torch

import methods
from benchmark.cost.parameters import count_parameters
from benchmark.engine.scales import singular_value_ranks
from methods import apply_method, merge_model
from methods.milora import MiLoRALayer
from methods.svft import SVFTLayer
from tests.test_methods import ALL_TARGETS, ATOL, COMPONENTS, RTOL, flat, make_base, make_input, reference_forward, toy, toy_input


def direct_svd(base: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.linalg.svd(flat(base), full_matrices=False)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_milora_starts_on_the_minor_part_and_trains_on_the_principal_part(kind: str) -> None:
    base, x = make_base(kind), make_input(kind)
    layer = MiLoRALayer(base, rank=3, lora_alpha=6)
    assert torch.equal(layer.adapted_weight(), base.weight), "MiLoRA must start exactly at the frozen weight"
    u, s, vh = direct_svd(base)
    minor = (u[:, -3:] * s[-3:]) @ vh[-3:]  # W_m = U_m S_m V_m^T, the 3 smallest singular triplets
    scaling = 6 / 3
    torch.testing.assert_close(scaling * layer.lora_B.double() @ layer.lora_A.double(), minor, atol=ATOL, rtol=RTOL)
    with torch.no_grad():
        layer.lora_A.normal_(0.0, 0.3)
        layer.lora_B.normal_(0.0, 0.3)
    principal = flat(base) - minor  # W_p, frozen
    expected = (principal + scaling * layer.lora_B.double() @ layer.lora_A.double()).reshape(base.weight.shape).float()
    torch.testing.assert_close(layer.adapted_weight(), expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer.merge()(x), layer(x).detach(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize(("pattern", "bandwidth"), [("plain", 0), ("banded", 2)])
def test_svft_is_w_plus_u_m_v_transposed(kind: str, pattern: str, bandwidth: int) -> None:
    base, x = make_base(kind), make_input(kind)
    layer = SVFTLayer(base, pattern, bandwidth)
    r_max = min(flat(base).shape)
    assert layer.coefficients.numel() == r_max + 2 * sum(r_max - k for k in range(1, bandwidth + 1))
    assert torch.equal(layer.adapted_weight(), base.weight)
    with torch.no_grad():
        layer.coefficients.normal_(0.0, 0.5)
    u, s, vh = direct_svd(base)
    M = torch.zeros(r_max, r_max, dtype=torch.float64)
    for i in range(r_max):
        for j in range(r_max):
            if abs(i - j) <= bandwidth:
                M[i, j] = layer.M()[i, j].item()
    assert torch.count_nonzero(layer.M()) == layer.coefficients.numel()
    # W' = U (Sigma + M) V^T on the layer's own singular vectors (a pair's sign is a choice; M is defined on them);
    # those vectors are W's SVD: they rebuild W with the directly computed singular values
    U, Vh = layer.U.double(), layer.Vh.double()
    expected = (U @ (torch.diag(layer.sigma.double()) + M) @ Vh).reshape(base.weight.shape).float()
    torch.testing.assert_close(layer.adapted_weight(), expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(U @ torch.diag(layer.sigma.double()) @ Vh, flat(base), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(s, layer.sigma.double(), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer(x), reference_forward(base, expected, x), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(layer.merge()(x), layer(x).detach(), atol=ATOL, rtol=RTOL)


def test_svft_banded_entries_sit_on_the_band() -> None:
    layer = SVFTLayer(make_base("linear"), "banded", 1)
    with torch.no_grad():
        layer.coefficients.copy_(torch.arange(1, layer.coefficients.numel() + 1, dtype=torch.float32))
    M = layer.M()
    r_max = M.shape[0]
    assert torch.equal(M.diagonal(), torch.arange(1, r_max + 1, dtype=torch.float32))
    assert torch.count_nonzero(M.diagonal(1)) == r_max - 1 and torch.count_nonzero(M.diagonal(-1)) == r_max - 1
    assert torch.count_nonzero(M) == 3 * r_max - 2


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "svft", "pattern": "random"}, "pattern must be one of"),
    ({"name": "svft", "pattern": "plain", "bandwidth": 2}, "use pattern: banded"),
    ({"name": "salt", "sv_energy": 1.5}, r"sv_energy must be a fraction in \(0, 1\]"),
    ({"name": "salt", "sv_energy": 0.9, "sv_rank": 4}, "not both"),
])
def test_bad_specs_are_named(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_method(toy(), {"targets": ALL_TARGETS, **spec}, COMPONENTS)


@pytest.mark.parametrize("energy", [0.5, 0.9, 0.99, 1.0])
def test_sv_energy_chooses_the_smallest_rank_keeping_that_energy_per_layer(energy: float) -> None:
    model, reference = toy(), toy()
    apply_method(model, {"name": "salt", "rank": 2, "sv_energy": energy, "targets": ALL_TARGETS}, COMPONENTS)
    chosen = {}
    for name, layer in methods.adapted_layers(model).items():
        sigma = direct_svd(reference.get_submodule(name))[1]
        kept = [float((sigma[:r] ** 2).sum() / (sigma ** 2).sum()) for r in range(1, sigma.numel() + 1)]
        expected = next(r for r, share in enumerate(kept, start=1) if share >= energy - 1e-12)
        assert layer.r == expected, (name, layer.r, expected)
        chosen[name] = expected
    report = singular_value_ranks(model)
    assert {name: r for kind in report.values() for name, r in kind["per_layer"].items()} == chosen
    assert report["neck"]["r_max"] == 8 and report["attn.qkv"]["max"] <= report["attn.qkv"]["r_max"]
    assert len({r for r in chosen.values()}) > 1 or energy == 1.0, "layers with other spectra get other ranks"


def test_merge_model_folds_the_new_methods() -> None:
    for spec in ({"name": "milora", "rank": 2}, {"name": "svft", "pattern": "banded", "bandwidth": 1},
                 {"name": "salt", "sv_energy": 0.8}):
        model, x = toy(), toy_input()
        apply_method(model, {"targets": ALL_TARGETS, **spec}, COMPONENTS)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.1)
        expected = model(x).detach()
        merge_model(model)
        assert not methods.adapted_layers(model)
        torch.testing.assert_close(model(x), expected, atol=ATOL, rtol=RTOL)
        assert count_parameters(model)[1] == count_parameters(toy())[1]
