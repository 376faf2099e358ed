"""SegNet (Badrinarayanan et al. 2017) in its original form; no library used here ships it.

Encoder: the 13 convolutions of VGG16-BN in 5 stages, each stage ending in 2 x 2 max pooling whose
indices are kept. Decoder: the mirror image, upsampling by max-unpooling with those indices (no
learned upsampling), each convolution followed by BatchNorm and ReLU, except the last, a plain 3 x 3
convolution to the mask logits (the original fed it to a softmax). 29.44M parameters, the paper's
"SegNet 29M".
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from baselines.base import Baseline, register

VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SegNet(nn.Module):
    """`stages` lists the widths of each encoder stage's convolutions; the decoder mirrors them."""

    def __init__(self, stages: tuple[tuple[int, ...], ...] = VGG16_STAGES, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        stage_inputs = [in_channels] + [stage[-1] for stage in stages[:-1]]
        self.encoder = nn.ModuleList(
            nn.Sequential(*(_conv_bn_relu(c_in, c_out) for c_in, c_out in zip((first, *widths[:-1]), widths)))
            for first, widths in zip(stage_inputs, stages)
        )
        decoder = []
        for index in reversed(range(len(stages))):
            width = stages[index][-1]
            layers = [_conv_bn_relu(width, width) for _ in stages[index][1:]]
            if index > 0:
                layers.append(_conv_bn_relu(width, stage_inputs[index]))
            else:
                layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
            decoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(decoder)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        pooled_from: list[tuple[torch.Tensor, torch.Size]] = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)
            pooled_from.append((indices, size))
        for stage in self.decoder:
            indices, size = pooled_from.pop()
            x = stage(F.max_unpool2d(x, indices, 2, 2, output_size=size))
        return x


def build(hparams: dict, input_size: int) -> nn.Module:
    stages = tuple(tuple(widths) for widths in hparams["stages"])
    if input_size < 2 ** len(stages):
        raise ValueError(f"SegNet pools {len(stages)} times; input_size {input_size} is below {2 ** len(stages)} px")
    return SegNet(stages)


BASELINE = register(
    Baseline(
        name="segnet",
        label="SegNet",
        description="SegNet with a VGG16-BN encoder and max-unpooling decoder (29.44M parameters)",
        hparams={"stages": [list(widths) for widths in VGG16_STAGES]},
        build=build,
    )
)
