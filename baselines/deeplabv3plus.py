"""DeepLabV3+ (Chen et al. 2018) from segmentation-models-pytorch with a ResNet-101 encoder at
output stride 16, ASPP rates (12, 24, 36) and a 4x-upsampling head: 45.67M parameters, the paper's
"DeepLabV3+ 45M". Random weights unless `encoder_checkpoint` names a local ImageNet state dict.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.base import Baseline, register
from baselines.smp_models import build_smp

if TYPE_CHECKING:
    from torch import nn


def build(hparams: dict, input_size: int) -> nn.Module:
    import segmentation_models_pytorch as smp  # not with the module: validating a grid needs no smp

    return build_smp(smp.DeepLabV3Plus, hparams, input_size, encoder_output_stride=16)


BASELINE = register(
    Baseline(
        name="deeplabv3plus",
        label="DeepLabV3+",
        description="smp DeepLabV3+ with a ResNet-101 encoder, output stride 16 (45.67M parameters)",
        hparams={"encoder_name": "resnet101", "encoder_checkpoint": None},
        build=build,
    )
)
