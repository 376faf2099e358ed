"""The peft-sam benchmark's methods (selective tuning, SSF, AdaptFormer, FacT) and `blocks:` placement,
against direct counts and their papers' formulas."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.method_checks import _cached_architecture
from methods import apply_method
from methods.base import encoder_blocks
from benchmark.cost.parameters import count_parameters
from tests.test_methods import COMPONENTS, toy, toy_input

REPO = Path(__file__).resolve().parents[1]

DIM = 24  # the toy's width; its blocks are 2, each: LayerNorm, qkv 24->72, proj 24->24, fc1 24->48, fc2 48->24


def trainable(model: nn.Module) -> dict[str, int]:
    return {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def sam_vit_b() -> tuple[nn.Module, dict[str, str]]:
    """SAM ViT-B at 512 px without weights (meta device), as config checks build it."""
    return _cached_architecture("sam_vit_b", 512)


def fresh_sam(sam_vit_b) -> tuple[nn.Module, dict[str, str]]:
    import copy

    model, components = sam_vit_b
    return copy.deepcopy(model), components


# --- placement: blocks -----------------------------------------------------------------------------


def test_blocks_are_read_from_module_names(sam_vit_b) -> None:
    assert encoder_blocks(toy(), COMPONENTS) == ["blocks.0", "blocks.1"]
    assert encoder_blocks(*sam_vit_b) == [f"image_encoder.blocks.{i}" for i in range(12)]


def test_blocks_of_tinyvit_and_hiera_are_counted_through_stages() -> None:
    """LiteMedSAM's TinyViT: stages 1-3 hold 2 + 6 + 2 transformer blocks (stage 0 is convolutional,
    no component reaches it); SAM2's Hiera-T trunk 12 blocks."""
    lite = encoder_blocks(*_cached_architecture("litemedsam", 256))
    assert len(lite) == 10 and lite[0] == "image_encoder.layers.1.blocks.0" and lite[-1] == "image_encoder.layers.3.blocks.1"
    hiera = encoder_blocks(*_cached_architecture("sam2_hiera_t", 512))
    assert hiera == [f"image_encoder.trunk.blocks.{i}" for i in range(12)]


def test_blocks_last_k_and_indices_choose_the_layers() -> None:
    late = toy()
    assert apply_method(late, {"name": "lora", "rank": 2, "blocks": 1}, COMPONENTS) == [
        "blocks.1.attn.qkv", "blocks.1.attn.proj", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]
    listed = toy()
    assert apply_method(listed, {"name": "lora", "rank": 2, "blocks": [0]}, COMPONENTS)[0] == "blocks.0.attn.qkv"
    every = toy()
    assert len(apply_method(every, {"name": "lora", "rank": 2, "targets": ["attn.qkv", "neck"]}, COMPONENTS)) == 3
    # rank 2: qkv 2 (24 + 72), proj 2 (24 + 24), fc1 2 (24 + 48), fc2 2 (48 + 24) in the one late block
    assert count_parameters(late)[0] == 2 * (96 + 48 + 72 + 72)


@pytest.mark.parametrize(("blocks", "message"), [
    (3, "3 last blocks asked, but the model has 2 encoder blocks"),
    (0, "the model has 2 encoder blocks"),
    ([0, 2], "the model has 2 encoder blocks; not valid: [2]"),
    ([1, 1], "must be distinct indices in 0..1"),
    ("late", "a count of last blocks or a list of block indices"),
])
def test_wrong_blocks_are_named_with_the_block_count(blocks, message) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        apply_method(toy(), {"name": "lora", "blocks": blocks}, COMPONENTS)


def test_blocks_with_targets_outside_every_block_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"targets \['neck'\] hold no module inside the chosen blocks 1"):
        apply_method(toy(), {"name": "lora", "targets": ["neck"], "blocks": 1}, COMPONENTS)


def test_wrong_blocks_on_sam_vit_b_name_its_twelve_blocks(sam_vit_b) -> None:
    model, components = fresh_sam(sam_vit_b)
    with pytest.raises(ValueError, match="the model has 12 encoder blocks; not valid: \\[12\\]"):
        apply_method(model, {"name": "salt", "blocks": [11, 12]}, components)


def test_late_full_fine_tuning_trains_every_parameter_of_the_chosen_blocks() -> None:
    model = toy()
    apply_method(model, {"name": "full", "blocks": 1}, COMPONENTS)
    block = sum(p.numel() for p in model.blocks[1].parameters())
    assert set(trainable(model)) == {f"blocks.1.{name}" for name, _ in model.blocks[1].named_parameters()}
    assert count_parameters(model)[0] == block
    everything = toy()
    apply_method(everything, {"name": "full"}, COMPONENTS)
    assert count_parameters(everything)[0] == count_parameters(everything)[1]


# --- selective tuning ------------------------------------------------------------------------------


def test_selective_kinds_on_the_toy_match_direct_counts() -> None:
    per_block = {
        "bias": DIM + 3 * DIM + DIM + 2 * DIM + DIM,  # norm, qkv, proj, fc1, fc2 biases
        "layernorm": 2 * DIM,
        "attention": (DIM * 3 * DIM + 3 * DIM) + (DIM * DIM + DIM),
    }
    for kind, count in per_block.items():
        model = toy()
        assert apply_method(model, {"name": "selective", "kinds": [kind]}, COMPONENTS) == []
        assert count_parameters(model)[0] == 2 * count, kind
    late = toy()
    apply_method(late, {"name": "selective", "kinds": ["bias", "layernorm"], "blocks": [1]}, COMPONENTS)
    assert count_parameters(late)[0] == per_block["bias"] + DIM  # the norm's bias is counted once
    assert all(name.startswith("blocks.1.") for name in trainable(late))


def test_selective_on_sam_vit_b_matches_direct_counts(sam_vit_b) -> None:
    d, blocks = 768, 12
    # windowed blocks (14 x 14 windows) hold rel_pos_h, rel_pos_w of (2*14-1) x 64; the 4 global
    # blocks at 512 px (32 x 32 tokens) (2*32-1) x 64
    rel_pos = 8 * 2 * 27 * 64 + 4 * 2 * 63 * 64
    expected = {
        "bias": blocks * (d + 3 * d + d + d + 4 * d + d),
        "layernorm": blocks * 4 * d,
        "attention": blocks * (d * 3 * d + 3 * d + d * d + d) + rel_pos,
    }
    assert expected == {"bias": 101_376, "layernorm": 36_864, "attention": 28_408_320}
    for kind, count in expected.items():
        model, components = fresh_sam(sam_vit_b)
        apply_method(model, {"name": "selective", "kinds": [kind]}, components)
        assert count_parameters(model)[0] == count, kind
        assert all(name.startswith("image_encoder.blocks.") for name in trainable(model))


def test_selective_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"kinds must be a non-empty list of \['attention', 'bias', 'layernorm'\]"):
        apply_method(toy(), {"name": "selective", "kinds": ["norms"]}, COMPONENTS)


def test_selective_output_is_the_frozen_models_at_the_start() -> None:
    model, reference = toy(), toy()
    apply_method(model, {"name": "selective", "kinds": ["attention"]}, COMPONENTS)
    x = toy_input()
    torch.testing.assert_close(model(x), reference(x))


# --- SSF -------------------------------------------------------------------------------------------


def randomise_ssf(model: nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "beta")):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("gamma") else 0.0))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_ssf_is_scale_and_shift_of_the_output_and_merges_exactly(kind) -> None:
    from methods.ssf import SSFLayer
    from tests.test_methods import make_base, make_input

    base = make_base(kind)
    layer = SSFLayer(base, layer_name=kind)
    randomise_ssf(layer)
    x = make_input(kind)
    shape = (-1,) if kind == "linear" else (-1, 1, 1)
    direct = base(x) * layer.gamma.detach().reshape(shape) + layer.beta.detach().reshape(shape)
    torch.testing.assert_close(layer(x), direct, atol=1e-5, rtol=1e-5)
    merged = layer.merge()
    assert type(merged) is type(base) and not any(p.requires_grad for p in merged.parameters())
    gamma, beta = layer.gamma.detach(), layer.beta.detach()
    w = base.weight.detach()
    torch.testing.assert_close(merged.weight, w * gamma.reshape(-1, *[1] * (w.dim() - 1)))  # diag(gamma) W
    torch.testing.assert_close(merged.bias, gamma * base.bias.detach() + beta)  # gamma b + beta
    torch.testing.assert_close(merged(x), layer(x), atol=1e-5, rtol=1e-5)


def test_ssf_without_bias_merges_beta_as_the_bias() -> None:
    from methods.ssf import SSFLayer

    base = nn.Linear(6, 5, bias=False)
    layer = SSFLayer(base)
    randomise_ssf(layer)
    x = torch.randn(4, 6)
    merged = layer.merge()
    torch.testing.assert_close(merged.bias, layer.beta.detach())
    torch.testing.assert_close(merged(x), layer(x), atol=1e-5, rtol=1e-5)


def test_ssf_on_the_toy_counts_two_per_channel_and_merges_to_the_frozen_layers() -> None:
    from methods import merge_model

    model = toy()
    adapted = apply_method(model, {"name": "ssf", "targets": ["attn.qkv", "attn.proj", "mlp", "neck"]}, COMPONENTS)
    assert len(adapted) == 9
    assert count_parameters(model)[0] == 2 * (2 * (3 * DIM + DIM + 2 * DIM + DIM) + 8)
    randomise_ssf(model)
    x = toy_input()
    before = model(x)
    merge_model(model)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    assert count_parameters(model) == (0, count_parameters(toy())[1])


# --- AdaptFormer -----------------------------------------------------------------------------------


class LNBlock(nn.Module):
    """A pre-norm block as SAM's: x' = x + attn(x) (identity here), out = x' + MLP(LN(x'))."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Module()
        self.mlp.lin1, self.mlp.act, self.mlp.lin2 = nn.Linear(dim, 16), nn.GELU(), nn.Linear(16, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp.lin2(self.mlp.act(self.mlp.lin1(self.norm2(x))))


class LNEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.blocks = nn.ModuleList(LNBlock() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


LN_COMPONENTS = {"mlp": r"blocks\.\d+\.mlp\.lin[12]"}


def test_adaptformer_is_the_papers_parallel_adapter() -> None:
    import copy

    import methods

    model = LNEncoder()
    frozen = copy.deepcopy(model)
    spec = {"name": "adaptformer", "bottleneck": 4, "blocks": [0, 2]}
    assert apply_method(model, spec, LN_COMPONENTS) == ["blocks.0.mlp.lin2", "blocks.2.mlp.lin2"]
    # per block: down 8*4 + 4, up 4*8 + 8, the learnable scale 1
    assert count_parameters(model)[0] == 2 * (8 * 4 + 4 + 4 * 8 + 8 + 1)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(model(x), frozen(x))  # up starts at zero
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 0.5)
    out = model(x)
    direct = x
    for index, block in enumerate(frozen.blocks):
        h = block.norm2(direct)
        mlp = block.mlp.lin2(block.mlp.act(block.mlp.lin1(h)))
        extra = 0
        if index in (0, 2):
            layer = model.blocks[index].mlp.lin2
            extra = layer.scale * (torch.relu(h @ layer.down.weight.T + layer.down.bias) @ layer.up.weight.T + layer.up.bias)
        direct = direct + mlp + extra
    torch.testing.assert_close(out, direct, atol=1e-5, rtol=1e-5)
    merged = methods.merge_model(copy.deepcopy(model))  # not mergeable: the layers stay, the function too
    assert sorted(methods.adapted_layers(merged)) == ["blocks.0.mlp.lin2", "blocks.2.mlp.lin2"]
    torch.testing.assert_close(merged(x), out)


def test_adaptformer_fixed_scale_and_bad_values() -> None:
    model = LNEncoder()
    apply_method(model, {"name": "adaptformer", "bottleneck": 4, "scale": 0.1}, LN_COMPONENTS)
    assert count_parameters(model)[0] == 3 * (8 * 4 + 4 + 4 * 8 + 8)
    with pytest.raises(ValueError, match="bottleneck must be a positive integer"):
        apply_method(LNEncoder(), {"name": "adaptformer", "bottleneck": 0}, LN_COMPONENTS)
    with pytest.raises(ValueError, match="the model has 3 encoder blocks"):
        apply_method(LNEncoder(), {"name": "adaptformer", "blocks": 4}, LN_COMPONENTS)


def test_adaptformer_on_sam_vit_b_counts(sam_vit_b) -> None:
    model, components = fresh_sam(sam_vit_b)
    adapted = apply_method(model, {"name": "adaptformer"}, components)
    assert adapted == [f"image_encoder.blocks.{i}.mlp.lin2" for i in range(12)]
    assert count_parameters(model)[0] == 12 * (2 * 768 * 64 + 64 + 768 + 1) == 1_189_644


# --- FacT ------------------------------------------------------------------------------------------


def fact_toy(form: str, rank: int = 3) -> tuple[nn.Module, nn.Module]:
    import copy

    model = toy()
    frozen = copy.deepcopy(model)
    apply_method(model, {"name": "fact", "form": form, "rank": rank, "scale": 0.7}, COMPONENTS)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 0.3)
    return model, frozen


@pytest.mark.parametrize("form", ["tt", "tk"])
def test_fact_is_the_papers_factorised_tensor(form) -> None:
    """Each layer's d x d slices (row-vector convention, W is in x out) against eq. TT / TK:
    dW_j = s U Sigma_j V^T, or s U (sum_k P[j, k] C_k) V^T, U and V the same for every layer."""
    model, frozen = fact_toy(form)
    layers = [model.get_submodule(name) for name in ("blocks.0.attn.qkv", "blocks.1.mlp.fc2")]
    assert layers[0].U is layers[1].U and layers[0].V is layers[1].V
    U, V, d, s = layers[0].U.detach(), layers[0].V.detach(), 24, 0.7
    for name in ("blocks.0.attn.qkv", "blocks.1.mlp.fc2", "blocks.1.mlp.fc1"):
        layer, base = model.get_submodule(name), frozen.get_submodule(name)
        w = base.weight.detach().T  # in x out
        for b in range(w.shape[0] // d):
            for a in range(w.shape[1] // d):
                if form == "tt":
                    core = layer.cores[b, a].detach()
                else:
                    core = sum(layer.P[b, a, k].detach() * layer.C[:, :, k].detach() for k in range(3))
                expected = w[b * d:(b + 1) * d, a * d:(a + 1) * d] + s * U @ core @ V.T
                got = layer.adapted_weight().detach().T[b * d:(b + 1) * d, a * d:(a + 1) * d]
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        x = torch.randn(4, w.shape[0])
        torch.testing.assert_close(layer(x), x @ layer.adapted_weight().detach().T + base.bias.detach(),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("form", ["tt", "tk"])
def test_fact_merges_and_counts_shared_factors_once(form) -> None:
    from methods import adapter_state_dict, merge_model

    model, _ = fact_toy(form)
    d, r, slices = 24, 3, 2 * (3 + 1 + 2 + 2)  # per block: qkv 1x3, proj 1x1, fc1 1x2, fc2 2x1
    per_form = slices * r * r if form == "tt" else r ** 3 + slices * r
    assert count_parameters(model)[0] == 2 * d * r + per_form
    assert sum(t.numel() for t in adapter_state_dict(model).values()) == 2 * d * r + per_form
    x = toy_input()
    before = model(x)
    merge_model(model)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


def test_fact_starts_at_the_frozen_model_and_rejects_odd_shapes() -> None:
    model, frozen = toy(), toy()
    apply_method(model, {"name": "fact", "form": "tk"}, COMPONENTS)
    x = toy_input()
    torch.testing.assert_close(model(x), frozen(x))
    with pytest.raises(ValueError, match="form must be one of"):
        apply_method(toy(), {"name": "fact", "form": "cp"}, COMPONENTS)
    with pytest.raises(ValueError, match="FacT adapts nn.Linear layers, not a Conv2d"):
        apply_method(toy(), {"name": "fact", "targets": ["attn.qkv", "neck"]}, COMPONENTS)


def test_fact_on_sam_vit_b_counts(sam_vit_b) -> None:
    model, components = fresh_sam(sam_vit_b)
    apply_method(model, {"name": "fact", "rank": 8}, components)
    assert count_parameters(model)[0] == 2 * 768 * 8 + 12 * 12 * 8 * 8  # U, V + 144 slices' cores


@pytest.mark.parametrize("spec", [
    {"name": "fact", "form": "tk", "rank": 2}, {"name": "ssf"}, {"name": "adaptformer", "bottleneck": 3},
    {"name": "selective", "kinds": ["bias"], "blocks": 1},
])
def test_adapter_only_checkpoints_reload_the_same_model(tmp_path, spec) -> None:
    from benchmark.engine.adapters import load_adapter, save_adapter

    model = toy()
    apply_method(model, spec, COMPONENTS)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    save_adapter(tmp_path / "a.safetensors", model, method=spec, backbone="toy", weights="toy")
    fresh = toy()
    apply_method(fresh, spec, COMPONENTS)
    load_adapter(fresh, tmp_path / "a.safetensors", method=spec, backbone="toy", weights="toy")
    x = toy_input()
    torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)


def test_decoder_only_trains_the_mask_decoder_and_prompt_encoder(sam_vit_b) -> None:
    model, components = fresh_sam(sam_vit_b)
    apply_method(model, {"name": "decoder"}, components)
    names = trainable(model)
    assert names and all(name.startswith(("mask_decoder.", "prompt_encoder.")) for name in names)
    # SAM ViT-B's mask decoder 4,058,340 and prompt encoder 6,220 (segment-anything's modules)
    assert count_parameters(model)[0] == 4_058_340 + 6_220
    with pytest.raises(ValueError, match="no parameter under"):
        apply_method(toy(), {"name": "decoder"}, COMPONENTS)


def test_counts_at_peft_sam_settings_match_what_peft_sam_states_or_differ_as_explained(tmp_path):
    """config/peft_sam_vit_b.yaml counted as peft-sam counts (encoder share + mask decoder and
    prompt encoder) against their printed totals; where they differ, by the documented amount."""
    from benchmark.config import load_config
    from benchmark.cost import peft_sam_params
    from benchmark.cost.paper_params import count_grid

    config = load_config(REPO / "config" / "peft_sam_vit_b.yaml", check_paths=False)
    records = {r["row"]: r for r in peft_sam_params.compare(count_grid(config))}
    stated_and_equal = ["full", "full_late6", "lora_r32", "lora_r32_late6", "qlora_r32", "decoder"]
    derived_and_equal = ["bitfit", "layernorm", "attention", "adaptformer"]
    for row in stated_and_equal + derived_and_equal:
        assert records[row]["matches_print"] and records[row]["delta_encoder"] == 0, row
        assert records[row]["stated"] == ("stated" if row in stated_and_equal else "derived from their code")
    assert records["full"]["encoder_ours"] == 89_670_912  # SAM ViT-B's encoder at its own 1024 px
    assert records["lora_r32_mlp_late6"]["delta_encoder"] == -6 * 49_152  # fused qkv: one rank-32 pair, not three
    assert records["ssf"]["delta_encoder"] == -(12 * 3_072 + 1_536)  # their SSF after LayerNorms and patch embedding
    assert records["fact_tt_r16"]["delta_encoder"] == (2 * 768 * 16 + 36 * 256) - 12 * 25_088  # shared U, V vs per block
    assert "fact_tk_r16" not in records  # peft-sam has no FacT-TK
    table = peft_sam_params.to_markdown(list(records.values()))
    assert "| lora_r32_mlp_late6 | Late-LoRA (A-50%) |" in table and "| no |" in table
