"""Geometry and augmentation shared by every dataset: aspect-preserving resize + pad, and the paper's
light augmentation (section 3.2: flip, rotation, brightness, saturation)."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

FLIP_P = 0.5
ROTATION_P, MAX_DEGREES = 0.5, 10.0
BRIGHTNESS_P, BRIGHTNESS_RANGE = 0.5, (0.8, 1.2)
SATURATION_P, SATURATION_RANGE = 0.2, (0.8, 1.2)


def resize_pad(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale the longer side to `size` (anti-aliased), then zero-pad bottom/right to size x size.

    The mask is resampled as a coverage fraction and thresholded at 0.5, so it stays binary and thin
    vessels survive downsampling where their coverage is at least half a pixel.
    """
    height, width = image.shape[:2]
    if mask.shape != (height, width):
        raise ValueError(f"image is {height}x{width} but mask is {mask.shape[0]}x{mask.shape[1]}")
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    mask = np.asarray(mask, dtype=bool)
    if (new_h, new_w) != (height, width):
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.LANCZOS))
        coverage = Image.fromarray(mask.astype(np.float32)).resize((new_w, new_h), Image.Resampling.BILINEAR)
        mask = np.asarray(coverage) >= 0.5
    out_image = np.zeros((size, size, 3), dtype=np.uint8)
    out_mask = np.zeros((size, size), dtype=bool)
    out_image[:new_h, :new_w] = image
    out_mask[:new_h, :new_w] = mask
    return out_image, out_mask


def augment(image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip / rotation / brightness / saturation of a 3xHxW [0,1] image and its 1xHxW {0,1} mask.

    Every call draws the same seven numbers from `rng` whatever is applied, so the stream of
    augmentations depends only on the rng seed.
    """
    draws = rng.random(7)
    if draws[0] < FLIP_P:
        image, mask = F.horizontal_flip(image), F.horizontal_flip(mask)
    if draws[1] < ROTATION_P:
        angle = float(MAX_DEGREES * (2 * draws[2] - 1))
        image = F.rotate(image, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
        mask = F.rotate(mask, angle, interpolation=InterpolationMode.NEAREST, fill=0.0)
    if draws[3] < BRIGHTNESS_P:
        low, high = BRIGHTNESS_RANGE
        image = F.adjust_brightness(image, float(low + (high - low) * draws[4]))
    if draws[5] < SATURATION_P:
        low, high = SATURATION_RANGE
        image = F.adjust_saturation(image, float(low + (high - low) * draws[6]))
    return image, mask
