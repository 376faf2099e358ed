"""SegFormer (Xie et al. 2021) from segmentation-models-pytorch: a MiT-B3 encoder and smp's all-MLP
decoder with 256 channels, 44.60M parameters. The paper's "Segformer 43M" names no variant; MiT-B3
is the one within 5% of it (B2 gives 24.72M, B4 61.37M). Random weights unless `encoder_checkpoint`
names a local ImageNet state dict.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.base import Baseline, register
from baselines.smp_models import build_smp

if TYPE_CHECKING:
    from torch import nn


def build(hparams: dict, input_size: int) -> nn.Module:
    import segmentation_models_pytorch as smp  # not with the module: validating a grid needs no smp

    return build_smp(smp.Segformer, hparams, input_size)


BASELINE = register(
    Baseline(
        name="segformer",
        label="Segformer",
        description="smp SegFormer with a MiT-B3 encoder (44.60M parameters)",
        hparams={"encoder_name": "mit_b3", "encoder_checkpoint": None},
        build=build,
    )
)
