"""The lean training step (docs/engine.md "A lean training step"): fused attention equal to
segment-anything's, activation checkpointing with the same gradients and one weight rebuild per
step, gradient accumulation equal to the full batch, compile equal to eager or a clear error,
and the settings validated, fingerprinted only where they change results, and summarised."""
from __future__ import annotations

import copy
import json
from functools import partial

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT
from torch import nn

import methods
from benchmark.config import validate
from benchmark.engine.attention import SDPAAttention, set_attention
from benchmark.engine.cell import cell_dir, run_cell
from benchmark.engine.checkpointing import checkpoint_blocks, set_checkpointing
from benchmark.engine.step import make_step, micro_batches
from benchmark.errors import CompileFailed, ConfigError
from benchmark.grid import STEP_DEFAULTS, expand_cells, fingerprint
from benchmark.models.sam import COMPONENTS
from benchmark.models.text import TextAffineLayer
from benchmark.summary import as_summary
from tests.conftest import tiny_grid


def vit_b_block(window: int) -> Block:
    """A SAM ViT-B block at 512 px (32 x 32 tokens): windowed (14) or global (0), with random,
    non-zero relative-position tables (SAM's are zero only at init)."""
    torch.manual_seed(window)
    block = Block(768, 12, use_rel_pos=True, rel_pos_zero_init=False, window_size=window, input_size=(32, 32))
    with torch.no_grad():
        block.attn.rel_pos_h.normal_(0, 0.5)
        block.attn.rel_pos_w.normal_(0, 0.5)
    return block


@pytest.mark.parametrize("window", [14, 0], ids=["windowed", "global"])
def test_sdpa_attention_equals_segment_anythings_at_512(window):
    eager = vit_b_block(window)
    fused = copy.deepcopy(eager)
    assert set_attention(fused, "sdpa") == 1 and isinstance(fused.attn, SDPAAttention)
    x = torch.randn(2, 32, 32, 768, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(2, 32, 32, 768, generator=torch.Generator().manual_seed(2))
    results = []
    for block in (eager, fused):
        inp = x.clone().requires_grad_(True)
        out = block(inp)
        grads = torch.autograd.grad((out * weights).sum(), [inp, block.attn.rel_pos_h, block.attn.qkv.weight])
        results.append((out, *grads))
    for reference, value in zip(results[0][:2], results[1][:2]):  # output and input gradient, absolute
        assert torch.allclose(value, reference, rtol=0, atol=1e-5), (value - reference).abs().max()
    for reference, value in zip(results[0][2:], results[1][2:]):  # parameter gradients sum over 2048 tokens
        assert (value - reference).abs().max() <= 1e-5 * reference.abs().max()
    assert results[0][2].abs().max() > 1, "the relative-position tables take part (their gradient is not zero)"


def tiny_encoder_model() -> nn.ModuleDict:
    """A 4-block SAM ViT encoder (blocks 1 and 3 global) under the name SAM's components expect."""
    torch.manual_seed(0)
    encoder = ImageEncoderViT(img_size=64, patch_size=16, embed_dim=48, depth=4, num_heads=4, mlp_ratio=2,
                              out_chans=16, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                              use_rel_pos=True, rel_pos_zero_init=False, window_size=2, global_attn_indexes=(1, 3))
    return nn.ModuleDict({"image_encoder": encoder})


def test_sdpa_keeps_the_layers_every_peft_method_adapts():
    eager, fused = tiny_encoder_model(), tiny_encoder_model()
    qkv = [m.qkv for m in fused.modules() if isinstance(m, Attention)]
    assert set_attention(fused, "sdpa") == 4
    assert [m.qkv for m in fused.modules() if isinstance(m, Attention)] == qkv, "the same nn.Linear objects"
    for model in (eager, fused):
        methods.get_method("lora").apply(model, COMPONENTS, {"name": "lora", "rank": 2})
    assert list(methods.adapted_layers(eager)) == list(methods.adapted_layers(fused))
    assert [n for n, _ in eager.named_parameters()] == [n for n, _ in fused.named_parameters()]


def test_unknown_attention_is_refused():
    with pytest.raises(ValueError, match="eager, sdpa"):
        set_attention(tiny_encoder_model(), "flash")


def adapted(name: str) -> nn.ModuleDict:
    """The tiny encoder with method `name` at rank 2, every trainable tensor moved off its init."""
    model = tiny_encoder_model()
    methods.get_method(name).apply(model, COMPONENTS, {"name": name, "rank": 2} if name != "svd" else {"name": "svd"})
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return model


def gradients(model: nn.ModuleDict, image: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    model["image_encoder"](image).square().mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


class RebuildCounter:
    """Counts every adapted layer's weight rebuild (adapted_weight calls)."""

    def __init__(self, model: nn.Module) -> None:
        self.calls = 0
        for layer in methods.adapted_layers(model).values():
            layer.adapted_weight = self._counted(layer.adapted_weight)

    def _counted(self, build):
        def counted():
            self.calls += 1
            return build()
        return counted


@pytest.mark.parametrize("name", ["lora", "salt", "svd", "dora"])
def test_checkpointing_gives_the_same_gradients_and_rebuilds_each_weight_once(name):
    plain = adapted(name)
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    checkpointed = copy.deepcopy(plain)
    assert set_checkpointing(checkpointed["image_encoder"], True) == 4
    assert [type(b).__name__ for b in checkpoint_blocks(checkpointed["image_encoder"])] == ["CheckpointedBlock"] * 4
    plain_count, checkpointed_count = RebuildCounter(plain), RebuildCounter(checkpointed)
    expected, got = gradients(plain, image), gradients(checkpointed, image)
    assert expected.keys() == got.keys() and len(got) > 0
    for key in expected:
        assert torch.allclose(got[key], expected[key], rtol=0, atol=1e-6), key
    layers = len(methods.adapted_layers(plain))
    rebuilds = 0 if name == "lora" else layers  # LoRA's forward never builds the dense weight
    assert plain_count.calls == rebuilds, "without checkpointing: one rebuild per layer per step"
    assert checkpointed_count.calls == rebuilds, "the recomputation in backward reuses the forward's rebuild"
    set_checkpointing(checkpointed["image_encoder"], False)
    assert [type(b) for b in checkpoint_blocks(checkpointed["image_encoder"])] == [Block] * 4


def test_checkpointed_blocks_run_plainly_in_evaluation():
    model = adapted("salt")
    set_checkpointing(model["image_encoder"], True)
    counter = RebuildCounter(model)
    model.eval()
    with torch.no_grad():
        model["image_encoder"](torch.randn(1, 3, 64, 64))
    assert counter.calls == len(methods.adapted_layers(model))


class WithTAL(nn.Module):
    """A segmenter whose logits depend on a BatchNorm TAL fed one text embedding for every image."""

    def __init__(self, norm: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.tal = TextAffineLayer(8, 4, norm=norm)
        self.register_buffer("text", torch.randn(1, 8))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        token = self.tal(self.text.expand(image.shape[0], -1))
        return self.conv(image) + token.sum(1)[:, None, None, None]


TRAIN = {"lr": 1e-2, "weight_decay": 0.01, "reg_weight": 0.0, "precision": "fp32"}


def one_step(model: nn.Module, accumulation: int, batch: int = 4) -> nn.Module:
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(batch, 3, 16, 16, generator=generator)
    mask = (torch.rand(batch, 1, 16, 16, generator=generator) > 0.7).float()
    model.train()
    make_step(model, {**TRAIN, "grad_accumulation": accumulation}, torch.device("cpu"))(image, mask)
    return model


def test_accumulation_updates_as_the_full_batch_without_batch_statistics():
    whole, parts = one_step(WithTAL("layer"), 1), one_step(WithTAL("layer"), 4)
    for (name, a), (_, b) in zip(whole.named_parameters(), parts.named_parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name


def test_accumulation_with_the_batchnorm_tal_changes_only_its_running_statistics():
    """Every gradient equals the full batch's; the TAL's Linear (before its BatchNorm) has a gradient
    that is zero in exact arithmetic, rounding noise of the full batch's mean in float, which AdamW
    would scale to a learning-rate-sized step either way (docs/engine.md)."""
    grads, models = [], []
    for accumulation in (1, 2):
        model = WithTAL("batch")
        step = make_step(model, {**TRAIN, "grad_accumulation": accumulation}, torch.device("cpu"))
        step.optimizer.step = lambda: None  # keep the gradients, skip the update
        generator = torch.Generator().manual_seed(5)
        model.train()
        step(torch.rand(4, 3, 16, 16, generator=generator), (torch.rand(4, 1, 16, 16, generator=generator) > 0.7).float())
        grads.append({name: p.grad for name, p in model.named_parameters()})
        models.append(model)
    for name, value in grads[0].items():
        assert torch.allclose(grads[1][name], value, rtol=0, atol=1e-6), name
    assert max(grads[0]["tal.linear.weight"].abs().max(), grads[1]["tal.linear.weight"].abs().max()) < 1e-6
    assert grads[0]["tal.norm.bias"].abs().max() > 1e-3, "the TAL's output (its bias) does train"
    whole, parts = (m.tal.norm for m in models)
    assert (whole.num_batches_tracked.item(), parts.num_batches_tracked.item()) == (1, 2)
    assert torch.allclose(parts.running_mean, whole.running_mean * 1.9, atol=1e-6), "0.1 m once; 0.1 m + 0.09 m twice"


def test_the_summary_says_what_micro_batches_change_for_each_batchnorm():
    from benchmark.engine.step import batchnorm_note

    assert batchnorm_note([]) == ""
    assert "same embedding" in batchnorm_note(["tal.norm"]) and "enc.bn" not in batchnorm_note(["tal.norm"])
    assert "enc.bn normalise each micro-batch with its own statistics" in batchnorm_note(["tal.norm", "enc.bn"])


def test_micro_batches_keep_two_images_where_a_batchnorm_trains():
    assert micro_batches(5, 2, batchnorm=False) == 2 and micro_batches(3, 4, batchnorm=False) == 3
    assert micro_batches(3, 2, batchnorm=True) == 1 and micro_batches(4, 2, batchnorm=True) == 2


def test_step_settings_are_validated_at_load(tmp_path):
    with pytest.raises(ConfigError, match="grad_accumulation 3 is larger than batch_size 2"):
        validate(tiny_grid(tmp_path, train={"batch_size": 2, "grad_accumulation": 3}))
    with pytest.raises(ConfigError, match="attention"):
        validate(tiny_grid(tmp_path, train={"attention": "flash"}))
    with pytest.raises(ConfigError, match="grad_accumulation"):
        validate(tiny_grid(tmp_path, train={"grad_accumulation": 0}))


def test_the_step_defaults_are_the_schemas():
    from benchmark.config import _schema

    schema = _schema()["properties"]["train"]["properties"]
    assert STEP_DEFAULTS == {key: schema[key]["default"] for key in STEP_DEFAULTS}


def test_fingerprints_change_only_where_results_do(tmp_path):
    def cell_fingerprint(**train) -> str:
        config = validate(tiny_grid(tmp_path, train={"epochs": 2, "batch_size": 2, "lr": 1e-3, **train}))
        cell = next(iter(expand_cells(config).values()))
        return fingerprint(cell, config)

    base = cell_fingerprint()
    assert cell_fingerprint(**STEP_DEFAULTS) == base, "grids written before these settings keep their fingerprints"
    assert cell_fingerprint(activation_checkpointing=True) == base, "the same gradients bit for bit"
    for changed in ({"attention": "sdpa"}, {"grad_accumulation": 2}, {"compile": True}):
        assert cell_fingerprint(**changed) != base, changed


def test_a_cell_records_how_its_step_ran(tmp_path):
    config = validate(tiny_grid(tmp_path, train={"epochs": 1, "batch_size": 4, "lr": 1e-3, "augment": False,
                                                  "grad_accumulation": 2, "activation_checkpointing": True}))
    cell = next(iter(expand_cells(config).values()))
    run_cell(config, cell.id)
    summary = json.loads((cell_dir(config, cell.id) / "summary.json").read_text())
    step = summary["trained"]["step"]
    assert summary["format"] == 3 and step["grad_accumulation"] == 2 and step["attention"] == "eager"
    assert step["trained_batchnorms"] == [] and step["batchnorm_note"] == "", "MONAI's U-Net normalises per instance"
    assert step["checkpointed_blocks"] == 0, "a U-Net has no encoder blocks to checkpoint"
    assert summary["provenance"]["config"]["train"]["grad_accumulation"] == 2
    older = {**summary, "format": 2, "trained": {k: v for k, v in summary["trained"].items() if k != "step"}}
    assert as_summary(older)["trained"]["step"] is None, "summaries written before format 3 still read"


class GraphBreak(nn.Module):
    """An encoder torch.compile cannot take as one graph (data-dependent Python control flow)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum().item() > 0 else x


def test_a_failed_compile_stops_with_torchs_message():
    model = nn.Module()
    model.image_encoder = GraphBreak()
    model.head = nn.Conv2d(3, 1, 1)
    model.forward = lambda image: model.head(model.image_encoder(image))
    step = make_step(model, {**TRAIN, "compile": True}, torch.device("cpu"))
    with pytest.raises(CompileFailed, match="train.compile.*torch said: .*"):
        step(torch.rand(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float())


@pytest.mark.slow
def test_compiled_encoder_trains_as_eager_within_1e_5():
    """Inductor fuses and reorders float sums: a step's loss and every gradient agree with eager within
    1e-5 (gradients relative to their largest entry; about two minutes on two loaded cores). Updates
    are not compared: AdamW scales a near-zero gradient's rounding noise to a learning-rate step."""
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    results = []
    for compiled in (False, True):
        model = adapted("salt")
        model.forward = lambda x, model=model: model["image_encoder"](x).mean(1, keepdim=True)
        step = make_step(model, {**TRAIN, "attention": "sdpa", "compile": compiled}, torch.device("cpu"))
        step.optimizer.step = lambda: None  # keep the gradients, skip the update
        losses = step(image, torch.zeros(2, 1, 4, 4))
        results.append((losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert torch.allclose(results[0][0], results[1][0], rtol=0, atol=1e-5)
    for name, value in results[0][1].items():
        assert (results[1][1][name] - value).abs().max() <= 1e-5 * max(value.abs().max(), 1e-3), name
