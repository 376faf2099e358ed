"""Numeric precision of a cell's forward passes: `train.precision` fp32, bf16 or fp16.

bf16 and fp16 run the forward pass and the loss under torch.autocast; the weights the optimizer
updates, its state, the SVD factors and every adapted layer's weight rebuild (methods.base) stay
float32, and the metrics are computed from float32 logits. fp16's narrow exponent needs the loss
scaled so that small gradients do not flush to zero (GradScaler); bf16 has float32's range and
needs none. On CUDA, float32 matrix products may use TF32 tensor cores (`enable_tf32`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The context a forward pass and its loss run in: autocast to bf16/fp16, or nothing for fp32."""
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(DTYPES)}")
    dtype = DTYPES[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16; a pass-through scaler otherwise (its state is checkpointed either way)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def enable_tf32(device: torch.device) -> None:
    """Let float32 matmuls and convolutions use TF32 on CUDA (10-bit mantissa inputs, fp32 accumulate)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
