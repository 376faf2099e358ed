"""The training step: forward under the cell's precision, the objective, backward, and the optimizer
and loss-scaler step. Cells (engine.train), `saltbench bench` and `saltbench plan` all run this one
step, so a change to how a step computes is made once and timed where it runs.

The lean settings of a grid's `train` act here too (docs/engine.md "A lean training step"):
`attention` (engine.attention), `activation_checkpointing` (engine.checkpointing), `compile` (the
image encoder through torch.compile) and `grad_accumulation` (each batch as micro-batches, one
optimizer step). Settings absent from a hand-written train dict take engine.grid.STEP_DEFAULTS.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from benchmark.engine.attention import SDPAAttention, set_attention
from benchmark.engine.checkpointing import checkpoint_blocks, set_checkpointing
from benchmark.engine.losses import SegmentationObjective
from benchmark.engine.precision import autocast, grad_scaler
from benchmark.errors import CompileFailed
from benchmark.grid import STEP_DEFAULTS
from benchmark.models.prompted import TAL_PREFIX, segment

TAL_NOTE = ("the TAL's BatchNorm normalises each micro-batch with that micro-batch's statistics and updates its "
            "running statistics once per micro-batch (momentum 0.1 each time), so k times per optimizer step. With "
            "one text prompt every row it sees is the same embedding, so its training output (its bias) is the same "
            "for any micro-batch of two or more images; the running statistics, used at evaluation, move faster. "
            "The Linear before it gets a gradient that is zero in exact arithmetic (the BatchNorm removes whatever "
            "all rows share) and rounding noise in float (about 1e-7 for a full batch's mean, exactly 0 for a "
            "two-image mean), which AdamW scales to learning-rate-sized steps: with or without micro-batches those "
            "weights move by noise, and differently, which reaches evaluation through the running statistics.")
OTHER_NOTE = ("{names} normalise each micro-batch with its own statistics, so their training output and gradients "
              "differ from the full batch's, and update their running statistics k times per optimizer step.")
FLOOR_NOTE = " Micro-batches never go below two images where a BatchNorm trains."


def step_setting(train_cfg: dict, key: str):
    return train_cfg.get(key, STEP_DEFAULTS[key])


def trained_batchnorms(model: nn.Module) -> list[str]:
    """BatchNorms whose weights train: in training mode they normalise with batch statistics."""
    return [name for name, module in model.named_modules()
            if isinstance(module, _BatchNorm) and any(p.requires_grad for p in module.parameters())]


def compile_target(model: nn.Module) -> nn.Module:
    """What `compile` compiles: the image encoder (the whole model for a baseline, which has none)."""
    return getattr(model, "image_encoder", model)


def configure(model: nn.Module, train_cfg: dict) -> None:
    """Apply `train_cfg`'s attention, checkpointing and compile settings to `model`, in place; module
    and parameter names do not change, so PEFT layers, checkpoints and adapters are unaffected."""
    encoder = compile_target(model)
    set_attention(model, step_setting(train_cfg, "attention"))
    set_checkpointing(encoder, step_setting(train_cfg, "activation_checkpointing"))
    if step_setting(train_cfg, "compile") and getattr(encoder, "_compiled_call_impl", None) is None:
        encoder.compile(backend="inductor", fullgraph=True)  # one graph: a graph break is an error, not eager code


def step_record(model: nn.Module, train_cfg: dict) -> dict:
    """How the step ran, for the cell summary (summary.StepRecord)."""
    sdpa = sum(isinstance(m, SDPAAttention) for m in model.modules())
    attention = step_setting(train_cfg, "attention")
    if attention == "sdpa" and not sdpa:
        attention = ("sdpa requested; this encoder has no segment-anything attention (SAM2's Hiera already uses "
                     "scaled_dot_product_attention, LiteMedSAM's TinyViT keeps its own)")
    accumulation = step_setting(train_cfg, "grad_accumulation")
    norms = trained_batchnorms(model)
    return {"attention": attention, "sdpa_modules": sdpa,
            "checkpointed_blocks": len(checkpoint_blocks(compile_target(model)))
            if step_setting(train_cfg, "activation_checkpointing") else 0,
            "compiled": bool(step_setting(train_cfg, "compile")), "grad_accumulation": accumulation,
            "trained_batchnorms": norms, "batchnorm_note": batchnorm_note(norms) if accumulation > 1 else ""}


def batchnorm_note(norms: list[str]) -> str:
    """What micro-batches change for the trained BatchNorms `norms` (empty: nothing)."""
    if not norms:
        return ""
    others = [name for name in norms if not name.startswith(TAL_PREFIX)]
    parts = ([TAL_NOTE] if len(others) < len(norms) else []) + ([OTHER_NOTE.format(names=", ".join(others))] if others else [])
    return " ".join(parts) + FLOOR_NOTE


def micro_batches(size: int, accumulation: int, batchnorm: bool) -> int:
    """How many micro-batches a batch of `size` images runs as: `accumulation`, but never parts of
    fewer than 2 images where a BatchNorm trains (it cannot normalise a single row)."""
    return max(1, min(accumulation, size // 2 if batchnorm else size))


@dataclass
class TrainStep:
    """One optimizer step of `model` per call. `optimizer` is None for a model with nothing
    trainable, whose step is its forward and objective (what a zero-shot row costs to score)."""

    model: nn.Module
    objective: SegmentationObjective
    optimizer: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    precision: str
    device: torch.device
    accumulation: int = 1
    batchnorm: bool = False  # a BatchNorm trains: micro-batches keep two images or more
    compiled: bool = False
    steps_taken: int = 0

    def __call__(self, image: Tensor, mask: Tensor, prompt: dict[str, Tensor] | None = None) -> Tensor:
        """Step on one batch (with its box or point prompts, benchmark.data.prompts, for a row that
        has them); the detached (total, segmentation, regulariser) losses of the whole batch."""
        if not (self.compiled and self.steps_taken == 0):
            return self._step(image, mask, prompt)
        from torch._dynamo.exc import TorchDynamoException  # imported only where something compiles

        try:  # torch.compile compiles at the first call: a failure there is the compile's
            return self._step(image, mask, prompt)
        except TorchDynamoException as error:
            raise CompileFailed(f"train.compile: torch.compile (inductor, fullgraph) of the image encoder failed; "
                                f"set train.compile: false to train eagerly. torch said: {error}") from error

    def _step(self, image: Tensor, mask: Tensor, prompt: dict[str, Tensor] | None) -> Tensor:
        parts = micro_batches(image.shape[0], self.accumulation, self.batchnorm)
        prompts = [None] * parts if prompt is None else [
            dict(zip(prompt, values)) for values in zip(*(value.tensor_split(parts) for value in prompt.values()))]
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        losses = torch.zeros(3, device=image.device)
        for images, masks, part_prompt in zip(image.tensor_split(parts), mask.tensor_split(parts), prompts):
            # the objective is a mean over images, and its regulariser the same in every part: the
            # batch's loss is the parts' losses weighted by their share of the images
            share = images.shape[0] / image.shape[0]
            with autocast(self.precision, self.device):
                logits = segment(self.model, images, part_prompt)
                loss, seg, reg = self.objective(self.model, logits.float(), masks)
            if self.optimizer is not None:
                self.scaler.scale(loss * share).backward()  # share 1.0 for one part: bit-exact
            detached = torch.stack([loss.detach(), seg.detach(), reg.detach()])
            losses = losses + detached * share
        if self.optimizer is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.steps_taken += 1
        return losses


def make_step(model: nn.Module, train_cfg: dict, device: torch.device) -> TrainStep:
    """The step a cell with settings `train_cfg` (a grid's validated `train`) takes: AdamW over the
    trainable parameters at the cell's lr and weight decay, the paper's objective with its
    regulariser weight, the cell's precision, and its lean settings applied to `model` (configure)."""
    configure(model, train_cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"]) if params else None
    return TrainStep(model, SegmentationObjective(train_cfg["reg_weight"]), optimizer,
                     grad_scaler(train_cfg["precision"], device), train_cfg["precision"], device,
                     step_setting(train_cfg, "grad_accumulation"), bool(trained_batchnorms(model)),
                     bool(step_setting(train_cfg, "compile")))
