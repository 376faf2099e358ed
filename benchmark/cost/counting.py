"""What a model costs: parameters, and GFLOPs per image as the paper reports them.

The paper counts multiply-accumulates (MACs) of one image in eval mode without gradients and
reports GFLOPs = 2 x MACs / 1e9. Two counters are used and the one used is named in the result:

- fvcore counts one MAC as one flop, so its total is doubled here. It is tried first, with only its
  handles for MAC ops, not those for element-wise work (norms, interpolation, pooling).
- torch.utils.flop_counter.FlopCounterMode counts 2 flops per MAC, taken as is. It is used where
  fvcore cannot trace the model (SegNet's max_unpool2d) or leaves a MAC-carrying op uncounted
  (scaled_dot_product_attention), where fvcore's total would be too low.

Both count convolutions (transposed too) and matrix products, so on a model both can trace they agree.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from benchmark.cost.parameters import parameter_numel
from benchmark.io import read_json_object, read_or_discard, write_json
from benchmark.quiet import FVCORE_IMPORT, silenced

with silenced(FVCORE_IMPORT):
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import (
        addmm_flop_jit,
        bmm_flop_jit,
        conv_flop_jit,
        einsum_flop_jit,
        get_shape,
        linear_flop_jit,
        matmul_flop_jit,
    )

GFLOPS_CONVENTION = "GFLOPs = 2 x MACs / 1e9 for one image, eval mode, merged model (as the paper counts)"
FVCORE = "fvcore"
FLOP_COUNTER_MODE = "torch FlopCounterMode"


def _four_bit_matmul(inputs: list, outputs: list) -> int:
    """bitsandbytes' 4-bit product (QLoRA's frozen layers): x (..., in) times the dequantized
    weight, the MACs of the linear layer it stands for."""
    rows = 1
    for size in get_shape(inputs[0]):
        rows *= size
    return rows * get_shape(outputs[0])[-1]


# fvcore's handles for multiply-accumulate ops; its other defaults (norms, interpolation, pooling)
# count element-wise work and are left out.
_FVCORE_MAC_HANDLES = {
    "aten::addmm": addmm_flop_jit,
    "aten::bmm": bmm_flop_jit,
    "aten::_convolution": conv_flop_jit,
    "aten::einsum": einsum_flop_jit,
    "aten::linear": linear_flop_jit,
    "aten::matmul": matmul_flop_jit,
    "aten::mm": matmul_flop_jit,
    "bitsandbytes::gemm_4bit": _four_bit_matmul,
    "bitsandbytes::gemv_4bit": _four_bit_matmul,
}
# Ops that carry MACs (baddbmm, conv2d, scaled_dot_product_attention, ...): one of them left
# uncounted by fvcore means its total is too low. Not matched: upsample_bilinear2d and the like.
_MAC_OP = re.compile(r"aten::_?(\w*mm|matmul|linear|einsum|conv\w*|\w*attention\w*)_?|bitsandbytes::\w*(gemm|gemv)\w*")


def _attention_flops(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size, *args: object,
                     out_shape: object = None, **kwargs: object) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA attention kernels but not the CPU one; same formula.
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}


def parameter_count(model: nn.Module) -> int:
    """Every parameter, trainable or not, each shared tensor once."""
    return sum(parameter_numel(p) for p in model.parameters())


def _fvcore_macs(model: nn.Module, image: torch.Tensor) -> float | None:
    """fvcore's MAC count, or None where it cannot trace the model or misses MACs."""
    analysis = FlopCountAnalysis(model, image).clear_op_handles().set_op_handle(**_FVCORE_MAC_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    try:
        macs = analysis.total()
    except (RuntimeError, TypeError):  # jit tracing of max_unpool2d raises TypeError (torch 2.14)
        return None
    missed = [op for op in analysis.unsupported_ops() if _MAC_OP.fullmatch(op)]
    return None if missed else float(macs)


def count_macs(model: nn.Module, image: torch.Tensor, counter: str | None = None) -> tuple[float, str]:
    """(MACs of model(image), the counter used), eval mode, no gradients.

    counter=None tries fvcore, then FlopCounterMode; FLOP_COUNTER_MODE forces the latter, for
    counts that are subtracted from one another and so must come from one counter.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            macs = None if counter == FLOP_COUNTER_MODE else _fvcore_macs(model, image)
            if macs is not None:
                return macs, FVCORE
            mode = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)
            with mode:
                model(image)
            return mode.get_total_flops() / 2, FLOP_COUNTER_MODE
    finally:
        model.train(was_training)


def random_images(model: nn.Module, batch: int, input_size: int) -> torch.Tensor:
    """batch x 3 x input_size x input_size, on the model's device and dtype."""
    parameter = next(model.parameters())
    return torch.rand(batch, 3, input_size, input_size, device=parameter.device, dtype=parameter.dtype)


def gflops_per_image(model: nn.Module, input_size: int) -> dict[str, float | str]:
    """{'gflops': 2 x MACs / 1e9 for one input_size x input_size RGB image, 'counter': which counter}."""
    macs, counter = count_macs(model, random_images(model, 1, input_size))
    return {"gflops": 2 * macs / 1e9, "counter": counter}


def cached_gflops(model: nn.Module, input_size: int, architecture: str, cache_dir: Path) -> dict[str, float | str]:
    """gflops_per_image, counted once per architecture: every merged PEFT model of a backbone has
    the frozen backbone's layers, so its inference cost does not depend on the method."""
    path = Path(cache_dir) / f"gflops-{hashlib.sha256(f'{architecture}@{input_size}'.encode()).hexdigest()[:16]}.json"
    cached = read_or_discard(path, read_json_object, "GFLOPs cache")
    if cached is not None:
        return cached
    cost = {**gflops_per_image(model, input_size), "architecture": architecture, "input_size": input_size}
    write_json(path, cost)
    return cost
