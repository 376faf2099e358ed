"""segmentation-models-pytorch networks, built without downloads.

smp fetches ImageNet encoder weights from the Hugging Face hub when asked; saltbench never asks
(`encoder_weights=None`). A config that wants ImageNet weights names a local state dict of the
encoder (`encoder_checkpoint`, .safetensors or a torch file), and a missing or mismatched file
fails at build time, naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetInput(nn.Module):
    """Standardises [0,1] images with ImageNet statistics before the network: the input smp's
    encoders are designed for, and the one any ImageNet checkpoint loaded into them was trained on,
    so the input convention does not change with the choice of weights."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network((image - self.mean) / self.std)


def load_encoder_checkpoint(encoder: nn.Module, path: str | Path, encoder_name: str) -> None:
    """Load a local encoder state dict strictly; classifier keys (fc, head) are dropped by smp."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder_checkpoint {path} not found: saltbench downloads no weights; save the {encoder_name} "
            "ImageNet state dict there, or set encoder_checkpoint: null to train from random weights"
        )
    try:
        state = load_file(path) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise several types for a damaged file
        raise ValueError(f"encoder_checkpoint {path} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    try:
        encoder.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"encoder_checkpoint {path} does not fit the {encoder_name} encoder: {error}") from None


def build_smp(architecture: Callable[..., nn.Module], hparams: dict, input_size: int, **options: object) -> nn.Module:
    """`architecture` (e.g. smp.DeepLabV3Plus) with hparams encoder_name and encoder_checkpoint."""
    encoder_name = hparams["encoder_name"]
    network = architecture(encoder_name=encoder_name, encoder_weights=None, in_channels=3, classes=1, **options)
    stride = network.encoder.output_stride
    if input_size % stride:
        raise ValueError(f"{network.name} downsamples {stride}x; input_size {input_size} is not a multiple of {stride}")
    if hparams["encoder_checkpoint"] is not None:
        load_encoder_checkpoint(network.encoder, hparams["encoder_checkpoint"], encoder_name)
    return ImageNetInput(network)
