"""RegUNet (MONAI's port of DeepReg's U-Net) with 32 initial channels and depth 4.

MONAI predicts from the levels listed in `extract_levels`, by default the bottom one only (1/16 of
the input, nearest-neighbour upsampled), and then builds no decoder at all: 7.86M parameters, the
paper's "RegUNet 7.8M". A full decoder (extract_levels [0, 1, 2, 3, 4]) has 11.79M, far from it, so
the paper's coarse default is kept; it is a plausible cause of RegUNet's low scores in Table 1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.base import Baseline, register

if TYPE_CHECKING:
    from torch import nn


def build(hparams: dict, input_size: int) -> nn.Module:
    depth = hparams["depth"]
    levels = hparams["extract_levels"]
    if levels is not None and max(levels) != depth:
        raise ValueError(f"regunet extract_levels {levels} must include the bottom level, depth {depth}")
    if input_size % 2**depth:
        raise ValueError(f"RegUNet halves the image {depth} times; input_size {input_size} is not a multiple of {2**depth}")
    from monai.networks.nets import RegUNet  # not with the module: validating a grid needs no MONAI

    return RegUNet(
        spatial_dims=2,
        in_channels=3,
        num_channel_initial=hparams["num_channel_initial"],
        depth=depth,
        out_channels=1,
        extract_levels=None if levels is None else tuple(levels),
    )


BASELINE = register(
    Baseline(
        name="regunet",
        label="RegUNet",
        description="MONAI RegUNet, 32 initial channels, depth 4, predicted from the bottom level (7.86M parameters)",
        hparams={"num_channel_initial": 32, "depth": 4, "extract_levels": None},
        build=build,
    )
)
