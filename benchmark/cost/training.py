"""What PEFT costs while it trains: adapter work, the per-step weight rebuild, the one-time SVD.

The merged model costs what the frozen one does (counting.gflops_per_image); training runs the
unmerged model. Its extra work is counted, not looked up by method name: the unmerged and merged
models are both counted at batch 1 and 2 with the counter of counting.py (fvcore with MAC handles, or
FlopCounterMode). Every count is linear in the batch, cost(b) = per_batch + b * per_image, so two
batches separate the work done once per forward pass whatever the batch (SALT's and S-SAM's
rebuild of W' from U, sigma, V^T, which jit tracing records like any other op) from the work done
per image (LoRA's x -> A -> B branch). A step of batch B then costs per_image + per_batch / B
per image. Forward only, eval mode, no gradients, as the paper counts; backward is not counted.

The SVD is not a MAC op the counters see (fvcore counts it as zero), so the one-time
factorisation is a formula over the layers that hold SVD factors (methods.base.register_svd).
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import methods
from benchmark.cost.counting import FLOP_COUNTER_MODE, count_macs, random_images
from benchmark.cost.parameters import count_parameters, parameter_numel, quant_state
from benchmark.io import read_json_object, read_or_discard, write_json
from benchmark.models.text import encoder_parameters

TRAINING_CONVENTION = (
    "GFLOPs = 2 x MACs / 1e9 per image, forward only (eval, no grad) at the given batch size: the unmerged "
    "model, each layer's weight rebuild counted once per batch and divided by the batch size; added = that "
    "minus the merged model at the same batch; SVD once = sum of 14 m n^2 + 8 n^3 flops (Golub-Reinsch thin SVD)"
)


def svd_flops(m: int, n: int) -> int:
    """Flops of a thin SVD (Sigma, U_1, V) of an m x n matrix by Golub-Reinsch: 14 M N^2 + 8 N^3
    with M = max(m, n), N = min(m, n): the "Sigma, U_1, V" entry of Golub & Van Loan's work table for
    the SVD algorithm (Matrix Computations, 4th ed. 2013, section 8.6.3). Flops (one add or one
    multiply each), so already in the paper's GFLOPs unit. An estimate: the SVD is not counted by the counters."""
    big, small = max(m, n), min(m, n)
    return 14 * big * small**2 + 8 * small**3


def svd_gflops(model: nn.Module) -> float:
    """The one-time SVD of every adapted layer that keeps SVD factors (S-SAM, SALT), in GFLOPs.
    PiSSA's initial SVD keeps no factors and is not included."""
    return sum(svd_flops(layer.U.shape[0], layer.Vh.shape[1]) for layer in methods.adapted_layers(model).values()
               if hasattr(layer, "sigma")) / 1e9


def _linear_fit(model: nn.Module, input_size: int, counter: str | None) -> tuple[float, float, str]:
    """(per_batch, per_image) MACs from counts at batch 1 and 2, and the counter."""
    one, used = count_macs(model, random_images(model, 1, input_size), counter)
    two, used_two = count_macs(model, random_images(model, 2, input_size), used)
    if used_two != used:
        raise RuntimeError(f"counters differ between batch 1 ({used}) and 2 ({used_two})")
    return 2 * one - two, two - one, used


Fit = Callable[[nn.Module, int, "str | None"], tuple[float, float, str]]


def training_cost(model: nn.Module, input_size: int, batch_size: int,
                  merged_fit: Fit = _linear_fit) -> dict[str, float | int | str]:
    """GFLOPs of the unmerged adapted `model` (left unchanged) per image at `batch_size`.

    gflops_step_per_image: forward with the adapters, rebuild amortised over the batch;
    gflops_merged_per_image: the merged model at the same batch; gflops_added_per_image: the
    difference, = gflops_adapters_per_image (work per image, e.g. LoRA's branch) +
    gflops_rebuild_per_batch / batch_size; gflops_svd_once: see svd_gflops. `merged_fit` counts
    the merged model (a cache of it may be given: every method of a backbone merges to the same layers).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    merged = methods.merge_model(copy.deepcopy(model))
    batch_a, image_a, counter = _linear_fit(model, input_size, None)
    batch_m, image_m, counter_m = merged_fit(merged, input_size, None)
    if counter_m != counter:  # one counter for every count that is subtracted
        counter = FLOP_COUNTER_MODE
        batch_a, image_a, _ = _linear_fit(model, input_size, counter)
        batch_m, image_m, _ = merged_fit(merged, input_size, counter)
    step, base = image_a + batch_a / batch_size, image_m + batch_m / batch_size
    return {
        "gflops_step_per_image": 2 * step / 1e9,
        "gflops_merged_per_image": 2 * base / 1e9,
        "gflops_added_per_image": 2 * (step - base) / 1e9,
        "gflops_adapters_per_image": 2 * (image_a - image_m) / 1e9,
        "gflops_rebuild_per_batch": 2 * (batch_a - batch_m) / 1e9,
        "gflops_svd_once": svd_gflops(model),
        "batch_size": batch_size,
        "input_size": input_size,
        "counter": counter,
        "convention": TRAINING_CONVENTION,
    }


def cached_training_cost(model: nn.Module, input_size: int, batch_size: int, key: str,
                         cache_dir: Path, architecture: str | None = None) -> dict[str, float | int | str]:
    """training_cost, counted once per `key` (architecture + method spec; input size and batch are
    added here): every seed and dataset of a cell has the same layers, so the same cost. With
    `architecture`, the merged model's counts are also cached per architecture and shared by methods."""
    digest = hashlib.sha256(f"{key}@{input_size}x{batch_size}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"training-cost-{digest}.json"
    cached = read_or_discard(path, read_json_object, "training-cost cache")
    if cached is not None:
        return cached

    def merged_fit(merged: nn.Module, size: int, counter: str | None) -> tuple[float, float, str]:
        name = hashlib.sha256(f"{architecture}@{size}/{counter}".encode()).hexdigest()[:16]
        fit_path = Path(cache_dir) / f"merged-fit-{name}.json"
        cached_fit = read_or_discard(fit_path, lambda p: tuple(read_json_object(p)["fit"]), "merged-model fit cache")
        if cached_fit is not None:
            return cached_fit
        fit = _linear_fit(merged, size, counter)
        write_json(fit_path, {"architecture": architecture, "input_size": size, "counter": counter, "fit": list(fit)})
        return fit

    cost = {**training_cost(model, input_size, batch_size, merged_fit if architecture else _linear_fit), "key": key}
    write_json(path, cost)
    return cost


def trainable_share(model: nn.Module, text_encoder: str | None) -> dict[str, float | int | str | None]:
    """Trainable parameters as a count and two percentages: of the model, and of the model plus the
    frozen text encoder (the official SALT code's denominator). The model holds only the text
    encoder's cached embedding, so the encoder is named (backbone config `text_encoder`) and
    counted by itself; None (baselines) leaves the second percentage out and says why."""
    trainable, total = count_parameters(model)
    text = encoder_parameters(text_encoder) if text_encoder else None
    return {
        "trainable": trainable,
        "total": total,
        "pct_model": 100.0 * trainable / total,
        "text_encoder": text_encoder,
        "text_encoder_parameters": text,
        "pct_with_text": None if text is None else 100.0 * trainable / (total + text),
        "denominators": "pct_model: every parameter of the segmentation model (image encoder, prompt encoder, "
                        "mask decoder, TAL, adapters); pct_with_text: the same plus the frozen text encoder, "
                        "which is not part of the model object (only its embedding is) and is counted by name"
                        if text is not None else
                        "pct_model: every parameter of the model; no text encoder (none is configured), "
                        "so no pct_with_text",
    }


def _stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds, with a 4-bit weight's quantization state (scales, code book)."""
    state = quant_state(tensor)
    extra = 0 if state is None else sum(t.numel() * t.element_size() for t in state.as_dict(packed=True).values()
                                        if isinstance(t, torch.Tensor))
    return tensor.numel() * tensor.element_size() + extra


def encoder_megabytes(model: nn.Module) -> dict[str, float] | None:
    """The frozen image encoder's parameters and buffers as stored and as float32 would store them
    (QLoRA keeps its block linears in 4 bits); None for a model without an image encoder."""
    encoder = getattr(model, "image_encoder", None)
    if encoder is None:
        return None
    tensors = [*encoder.parameters(), *encoder.buffers()]
    stored = sum(_stored_bytes(t) for t in tensors)
    # a 4-bit weight is a float weight stored otherwise; integer buffers (index tables) keep their size
    float32 = sum(4 * parameter_numel(t) if quant_state(t) is not None or t.is_floating_point()
                  else t.numel() * t.element_size() for t in tensors)
    return {"as_stored": round(stored / 2**20, 2), "at_float32": round(float32 / 2**20, 2)}

