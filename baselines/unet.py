"""U-Net as the paper trains it: 5 levels starting at 32 feature maps, residual units (MONAI).

With channels (32, 64, 128, 256, 512), strides 2 and two residual units per level this is
6.50M parameters, the paper's "U-Net 6.5M".
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.base import Baseline, register

if TYPE_CHECKING:
    from torch import nn


def build(hparams: dict, input_size: int) -> nn.Module:
    from monai.networks.nets import UNet  # not with the module: validating a grid needs no MONAI

    channels = tuple(hparams["channels"])
    return UNet(
        spatial_dims=2,
        in_channels=3,
        out_channels=1,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=hparams["num_res_units"],
    )


BASELINE = register(
    Baseline(
        name="unet",
        label="U-Net",
        description="MONAI residual U-Net, 5 levels from 32 feature maps (6.5M parameters)",
        hparams={"channels": [32, 64, 128, 256, 512], "num_res_units": 2},
        build=build,
    )
)
