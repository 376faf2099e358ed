"""Cost per cell: adapter work and the weight rebuild are counted from the model's own ops."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import methods
from benchmark import cli
from benchmark.cost.counting import gflops_per_image
from benchmark.cost.parameters import count_parameters
from benchmark.cost.training import cached_training_cost, svd_flops, svd_gflops, trainable_share, training_cost
from benchmark.cost.paper_gflops import PUBLISHED, paper_style_salt, paper_style_svd, readings

SIZE, PATCH, DIM, HIDDEN = 16, 4, 8, 16
TOKENS = (SIZE // PATCH) ** 2
COMPONENTS = {"attn.qkv": r"blocks\.\d+\.qkv", "attn.proj": r"blocks\.\d+\.proj", "mlp": r"blocks\.\d+\.lin[12]"}
SHAPES = {"qkv": (DIM, 3 * DIM), "proj": (DIM, DIM), "lin1": (DIM, HIDDEN), "lin2": (HIDDEN, DIM)}  # (in, out)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)
        self.lin1, self.lin2 = nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        x = x + self.proj((q @ k.transpose(-2, -1)).softmax(-1) @ v)
        return x + self.lin2(torch.relu(self.lin1(x)))


class TinyViT(nn.Module):
    """Patch embedding, two transformer blocks, a 1x1 conv head: B x 3 x 16 x 16 -> B x 1 x 4 x 4."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, DIM, PATCH, stride=PATCH)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Conv2d(DIM, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.embed(image)
        b, c, h, w = x.shape
        x = self.blocks(x.flatten(2).transpose(1, 2))
        return self.head(x.transpose(1, 2).reshape(b, c, h, w))


def adapted(spec: dict) -> nn.Module:
    torch.manual_seed(0)
    model = TinyViT()
    methods.apply_method(model, spec, COMPONENTS)
    return model


def macs(gflops: float) -> float:
    return gflops * 1e9 / 2


@pytest.mark.parametrize("rank", [1, 4])
def test_lora_adds_exactly_its_branch_per_token(rank):
    cost = training_cost(adapted({"name": "lora", "rank": rank}), SIZE, batch_size=3)
    branch = 2 * TOKENS * sum(rank * (fan_in + fan_out) for fan_in, fan_out in SHAPES.values())
    assert macs(cost["gflops_added_per_image"]) == pytest.approx(branch, abs=1e-3)
    assert macs(cost["gflops_adapters_per_image"]) == pytest.approx(branch, abs=1e-3)
    assert cost["gflops_rebuild_per_batch"] == pytest.approx(0, abs=1e-12)
    assert cost["gflops_svd_once"] == 0


@pytest.mark.parametrize("spec", [{"name": "salt", "rank": 2, "sv_rank": 0.5}, {"name": "svd"}])
def test_rebuild_is_counted_once_per_batch(spec):
    model = adapted(spec)
    one, two = training_cost(model, SIZE, batch_size=1), training_cost(model, SIZE, batch_size=2)
    rebuild = one["gflops_rebuild_per_batch"]
    assert rebuild > 0 and two["gflops_rebuild_per_batch"] == pytest.approx(rebuild)
    assert one["gflops_adapters_per_image"] == pytest.approx(0, abs=1e-12)
    assert one["gflops_added_per_image"] == pytest.approx(rebuild)
    assert two["gflops_added_per_image"] == pytest.approx(rebuild / 2)  # doubling the batch halves the share
    assert one["gflops_step_per_image"] - two["gflops_step_per_image"] == pytest.approx(rebuild / 2)


def test_svd_rebuild_counts_u_times_scaled_vh():
    """S-SAM rebuilds U (out x r) @ (diag(values) V^T) (r x in): out * r * in MACs per layer, r = min."""
    rebuild = training_cost(adapted({"name": "svd"}), SIZE, batch_size=1)["gflops_rebuild_per_batch"]
    expected = 2 * sum(fan_out * min(fan_in, fan_out) * fan_in for fan_in, fan_out in SHAPES.values())
    assert macs(rebuild) == pytest.approx(expected)


@pytest.mark.parametrize("spec", [{"name": "lora", "rank": 2}, {"name": "salt", "rank": 2}, {"name": "svd"}])
def test_merged_cost_equals_the_frozen_model(spec):
    torch.manual_seed(0)
    frozen = TinyViT()
    model = copy.deepcopy(frozen)
    methods.apply_method(model, spec, COMPONENTS)
    cost = training_cost(model, SIZE, batch_size=1)
    assert cost["gflops_merged_per_image"] == pytest.approx(gflops_per_image(frozen, SIZE)["gflops"])
    assert cost["counter"] == gflops_per_image(frozen, SIZE)["counter"]
    assert any(isinstance(m, methods.base.AdaptedLayer) for m in model.modules())  # left unmerged


def test_svd_formula_is_golub_reinsch_by_hand():
    assert svd_flops(6, 4) == 14 * 6 * 4 * 4 + 8 * 4 * 4 * 4 == 1856
    assert svd_flops(4, 6) == svd_flops(6, 4)
    by_hand = 2 * (svd_flops(3 * DIM, DIM) + svd_flops(DIM, DIM) + svd_flops(HIDDEN, DIM) + svd_flops(DIM, HIDDEN))
    assert svd_gflops(adapted({"name": "salt", "rank": 2})) == pytest.approx(by_hand / 1e9)
    assert training_cost(adapted({"name": "svd"}), SIZE, 1)["gflops_svd_once"] == pytest.approx(by_hand / 1e9)


def test_cache_is_keyed_by_spec_size_and_batch(tmp_path):
    model = adapted({"name": "lora", "rank": 2})
    first = cached_training_cost(model, SIZE, 2, "tiny/lora2", tmp_path)
    assert cached_training_cost(nn.Identity(), SIZE, 2, "tiny/lora2", tmp_path) == first  # read, not counted
    assert len(list(tmp_path.iterdir())) == 1
    cached_training_cost(model, SIZE, 4, "tiny/lora2", tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_methods_of_one_architecture_share_the_merged_count(tmp_path):
    lora, salt = adapted({"name": "lora", "rank": 2}), adapted({"name": "salt", "rank": 2})
    shared = {key: cached_training_cost(model, SIZE, 2, key, tmp_path, architecture="tiny")
              for key, model in (("tiny/lora2", lora), ("tiny/salt2", salt))}
    assert len(list(tmp_path.glob("merged-fit-*.json"))) == 1
    for key, model in (("tiny/lora2", lora), ("tiny/salt2", salt)):
        fresh = training_cost(model, SIZE, 2)
        assert {k: v for k, v in shared[key].items() if k != "key"} == pytest.approx(fresh)


def test_trainable_share_names_both_denominators():
    model = adapted({"name": "lora", "rank": 2})
    share = trainable_share(model, "all-MiniLM-L6-v2")
    trainable, total = count_parameters(model)
    assert share["pct_model"] == pytest.approx(100 * trainable / total)
    assert share["text_encoder_parameters"] > 20_000_000
    assert share["pct_with_text"] == pytest.approx(100 * trainable / (total + share["text_encoder_parameters"]))
    without = trainable_share(model, None)
    assert without["pct_with_text"] is None and "no text encoder" in without["denominators"]


def test_paper_style_arithmetic_by_hand():
    """Literal U ReLU(Sigma') V^T per layer (m k^2 + m k n) plus X Y (r'^2 d), / batch, undoubled."""
    model = adapted({"name": "salt", "rank": 2, "sv_rank": 3})
    literal = 0
    for fan_in, fan_out in SHAPES.values():
        k = min(fan_in, fan_out)
        literal += 2 * (fan_out * k * k + fan_out * k * fan_in + (k - 3) ** 2 * 2)
    assert paper_style_salt(model, batch=5) == pytest.approx(literal / 5 / 1e9)
    golub_reinsch_sigma_v = sum(2 * 2 * (4 * max(s) * min(s) ** 2 + 8 * min(s) ** 3) for s in SHAPES.values())
    assert paper_style_svd(model) == pytest.approx(golub_reinsch_sigma_v / 1e9)


def test_readings_cover_every_published_number():
    found = readings()
    assert {q for r in found for q in r.quantities} == set(PUBLISHED)
    assert {r.method["id"] for r in found if not r.global_attention} == {"lora_r4", "lora_r256", "salt_r4", "salt_r256"}


@pytest.mark.slow
def test_official_lora_r4_on_sam_vit_b_matches_the_paper(tmp_path):
    """SAM ViT-B at 512, LoRA r4 on qkv, proj, MLP and neck, global attention: 1.2373 vs the paper's 1.24."""
    from benchmark.cost.paper_gflops import build_paper_model, use_global_attention

    [reading] = [r for r in readings() if r.method["id"] == "lora_r4_official"]
    model = build_paper_model(reading.method, tmp_path)
    use_global_attention(model)
    added = training_cost(model, 512, 5)["gflops_added_per_image"]
    tokens, blocks = 1024, 12
    per_block = 4 * ((768 + 3 * 768) + (768 + 768) + 2 * (768 + 3072))
    neck = 4 * ((768 + 256) + (256 * 9 + 256))
    assert macs(added) == pytest.approx(tokens * (blocks * per_block + neck))
    assert added == pytest.approx(PUBLISHED["lora_r4"], rel=0.05)


def test_cli_cost_help(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["cost", "--help"])
    assert done.value.code == 0
    assert "--out" in capsys.readouterr().out
