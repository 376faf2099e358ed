"""QLoRA (Dettmers et al., NeurIPS 2023): LoRA over a frozen encoder stored in 4-bit NormalFloat.

As peft-sam's QLoRA row (micro_sam/models/peft_sam.py, `quantize=True`): every nn.Linear of the
image encoder's transformer blocks becomes a frozen bitsandbytes Linear4bit, and LoRA trains a
low-rank pair beside the targeted ones. Here the quantization is NF4 (the QLoRA paper's data
type; peft-sam keeps bitsandbytes' default FP4), blockwise absmax scaling over blocks of 64,
double quantization of the scales optional (`double_quant`), and the LoRA layer is peft's own for
4-bit bases (peft.tuners.lora.bnb.Linear4bit):

    y = dequant(W_nf4) x + b + (lora_alpha / rank) B A x,    computed in `compute_dtype`.

Weights are quantized when the method is applied, on the CPU where cells build their models (a
quantized layer moves to the GPU as is), so the frozen encoder is stored in about an eighth of its
float32 bytes; the cell summary gives both sizes (params.image_encoder_megabytes).

Not merged for inference: adding B A to a 4-bit weight re-quantizes it and changes the model
(peft warns the same), so the test set is evaluated on the trained, unmerged layers and the summary
says so. Whether bitsandbytes runs 4-bit layers on the grid's device is checked when the config is
validated (benchmark.method_checks), never discovered mid-training, and never replaced by fp32 LoRA.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from methods.base import DEFAULT_TARGETS, Method, adapt, encoder_blocks, match_targets, replace_modules, resolve_hparams
from methods.peft import ADAPTER, PeftLayer, inject

QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _bnb():
    try:
        import bitsandbytes
    except ImportError as error:  # a dependency of the project; missing only in a broken install
        raise ValueError(f"method 'qlora' needs bitsandbytes (pip install -c constraints.txt -e .): {error}") from None
    return bitsandbytes


def quantized(linear: nn.Linear, quant_type: str, double_quant: bool, compute_dtype: torch.dtype) -> nn.Module:
    """A frozen bitsandbytes Linear4bit holding `linear`'s weight, quantized now unless on the meta device."""
    bnb = _bnb()
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=compute_dtype, compress_statistics=double_quant, quant_type=quant_type,
                              device="meta")
    layer.weight = bnb.nn.Params4bit(linear.weight.detach(), requires_grad=False, compress_statistics=double_quant,
                                     quant_type=quant_type)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.detach(), requires_grad=False)
    # bitsandbytes' CPU inference route repacks the weight in place for AVX512-BF16 kernels, which needs
    # in_features to be a multiple of the block size (TinyViT's 160 is not); its general route is the same product
    layer.support_avx512bf16_for_cpu = False
    device = linear.weight.device
    return layer if device.type == "meta" else layer.to(device)


def quantize_encoder(model: nn.Module, components: dict[str, str], quant_type: str, double_quant: bool,
                     compute_dtype: torch.dtype) -> list[str]:
    """Replace every plain nn.Linear inside the encoder's transformer blocks; the names replaced."""
    blocks = encoder_blocks(model, components)
    if not blocks:
        raise ValueError("method 'qlora': the model has no encoder blocks to quantize")
    linears = {f"{block}.{name}": module for block in blocks
               for name, module in model.get_submodule(block).named_modules() if type(module) is nn.Linear}
    replace_modules(model, {name: quantized(module, quant_type, double_quant, compute_dtype)
                            for name, module in linears.items()})
    return list(linears)


class QLoRALayer(PeftLayer):
    """peft's LoRA layer on a 4-bit base: trained and evaluated unmerged."""

    mergeable = False
    note = ("QLoRA is evaluated unmerged: adding the LoRA update to a 4-bit weight would re-quantize it "
            "and change the model")

    def __init__(self, tuned: nn.Module, layer_name: str = "") -> None:
        super().__init__(tuned, "lora", layer_name)
        self.mergeable = False

    @property
    def matrix_shape(self) -> tuple[int, int]:
        base = self.tuned.get_base_layer()
        return base.out_features, base.in_features

    def adapted_weight(self) -> Tensor:
        """dequant(W_4bit) + (lora_alpha / rank) B A, in float32 (for analysis; never merged)."""
        base = self.tuned.get_base_layer()
        weight = _bnb().functional.dequantize_4bit(base.weight.data, base.weight.quant_state).float()
        return weight + self.tuned.get_delta_weight(ADAPTER).float()


@functools.cache
def check_device(device: str) -> None:
    """Quantize, run and back-propagate one small Linear4bit on `device`; ValueError if bitsandbytes cannot."""
    bnb = _bnb()
    try:
        layer = quantized(nn.Linear(64, 64).to(device), "nf4", False, torch.float32)
        x = torch.randn(2, 64, device=device, requires_grad=True)
        layer(x).sum().backward()
    except Exception as error:  # noqa: BLE001  whatever bitsandbytes raises on a device it does not support
        raise ValueError(f"bitsandbytes {bnb.__version__} cannot run 4-bit (NF4) layers on {device}: "
                         f"{type(error).__name__}: {error}. QLoRA is not replaced by float32 LoRA: run it on "
                         "a device bitsandbytes supports (a CUDA GPU), or remove the entry") from None


HPARAMS: dict[str, object] = {
    "rank": 4,
    "lora_alpha": None,  # None: = rank (scaling 1), as the built-in lora
    "lora_dropout": 0.0,
    "targets": list(DEFAULT_TARGETS),
    "blocks": None,
    "quant_type": "nf4",
    "double_quant": False,
    "compute_dtype": "float32",
}


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)
    rank, quant_type = hparams["rank"], hparams["quant_type"]
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"method 'qlora': rank must be a positive integer, got {rank!r}")
    if quant_type not in QUANT_TYPES:
        raise ValueError(f"method 'qlora': quant_type must be one of {list(QUANT_TYPES)}, got {quant_type!r}")
    if hparams["compute_dtype"] not in COMPUTE_DTYPES:
        raise ValueError(f"method 'qlora': compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {hparams['compute_dtype']!r}")
    matched = match_targets(model, components, hparams["targets"], hparams["blocks"])  # names checked before any change
    quantize_encoder(model, components, quant_type, bool(hparams["double_quant"]), COMPUTE_DTYPES[hparams["compute_dtype"]])
    alpha = rank if hparams["lora_alpha"] is None else hparams["lora_alpha"]
    tuned, _ = inject(model, list(matched), "lora", {"r": rank, "lora_alpha": alpha, "lora_dropout": hparams["lora_dropout"]},
                      loaded_in_4bit=True)
    layers = {name: QLoRALayer(layer, layer_name=name) for name, layer in tuned.items()}
    return adapt(model, components, hparams["targets"], lambda name, component, module: layers[name], hparams["blocks"])


METHOD = Method(
    name="qlora",
    label="QLoRA",
    description=("QLoRA: LoRA (peft's 4-bit layer) over an encoder whose block linears are frozen in 4-bit NF4 "
                 "(bitsandbytes); evaluated unmerged."),
    hparams=HPARAMS,
    apply=apply,
    check_device=check_device,
)
