"""UNETR as MONAI builds it: a ViT-B/16 encoder (12 layers, width 768, 12 heads) whose layers
3, 6, 9 and 12 feed a convolutional decoder.

The learned positional embedding holds one 768-vector per 16 x 16 patch, so the parameter count
grows with the input: 87.72M at 256 px, 88.32M at 512 and 90.68M at 1024, SAM's native size, which
is the paper's "UNETR 91M". Every one of them is within 5% of 91M. The network is always built for
the grid's input_size, the only size the embedding fits: hparam img_size is null (take input_size)
or must equal it, so a config written for one size fails clearly at another.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.base import Baseline, register

if TYPE_CHECKING:
    from torch import nn

PATCH = 16


def build(hparams: dict, input_size: int) -> nn.Module:
    if hparams["img_size"] is not None and hparams["img_size"] != input_size:
        raise ValueError(
            f"unetr img_size {hparams['img_size']} differs from input_size {input_size}: its positional "
            "embedding only fits the size it is built for; leave img_size unset (null) or make them equal"
        )
    if input_size % PATCH:
        raise ValueError(f"UNETR cuts the image into {PATCH} px patches; input_size {input_size} is not a multiple of {PATCH}")
    from monai.networks.nets import UNETR  # not with the module: validating a grid needs no MONAI

    return UNETR(
        in_channels=3,
        out_channels=1,
        img_size=input_size,
        spatial_dims=2,
        feature_size=hparams["feature_size"],
        hidden_size=hparams["hidden_size"],
        mlp_dim=hparams["mlp_dim"],
        num_heads=hparams["num_heads"],
        norm_name=hparams["norm_name"],
    )


BASELINE = register(
    Baseline(
        name="unetr",
        label="UNETR",
        description="MONAI UNETR, ViT-B/16 encoder (90.68M parameters at 1024 px, 88.32M at 512, 87.72M at 256)",
        hparams={
            "img_size": None,
            "feature_size": 16,
            "hidden_size": 768,
            "mlp_dim": 3072,
            "num_heads": 12,
            "norm_name": "instance",
        },
        build=build,
    )
)
