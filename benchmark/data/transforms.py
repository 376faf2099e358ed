"""Geometry and augmentation shared by every dataset: aspect-preserving resize + pad, and the paper's
light augmentation (section 3.2: flip, rotation, brightness, saturation, and a random crop that keeps
foreground). SAM's mean/std normalisation is not done here: each backbone wrapper applies its own
pixel_mean/pixel_std (benchmark/models/prompted.py), so images stay in [0, 1] up to the model.
"""

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
# The paper gives no crop parameters; these are saltbench's: half the time, a square crop of 50-100%
# of the side, scaled back up to the input size.
CROP_P, CROP_SCALE = 0.5, (0.5, 1.0)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Height and width of an image after resize_pad scales its longer side to `size`."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_pad(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale the longer side to `size` (anti-aliased), then zero-pad bottom/right to size x size.

    The mask is resampled as a coverage fraction and thresholded at 0.5, so it stays binary and thin
    vessels survive downsampling where their coverage is at least half a pixel.
    """
    height, width = image.shape[:2]
    if mask.shape != (height, width):
        raise ValueError(f"image is {height}x{width} but mask is {mask.shape[0]}x{mask.shape[1]}")
    new_h, new_w = resized_shape(height, width, size)
    mask = np.asarray(mask, dtype=bool)
    if (new_h, new_w) != (height, width):
        coverage = Image.fromarray(mask.astype(np.float32)).resize((new_w, new_h), Image.Resampling.BILINEAR)
        mask = np.asarray(coverage) >= 0.5
    out_mask = np.zeros((size, size), dtype=bool)
    out_mask[:new_h, :new_w] = mask
    return resize_pad_image(image, size), out_mask


def resize_pad_image(image: np.ndarray, size: int) -> np.ndarray:
    """The image half of resize_pad, for images without a mask (saltbench predict): the same pixels."""
    height, width = image.shape[:2]
    new_h, new_w = resized_shape(height, width, size)
    if (new_h, new_w) != (height, width):
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.LANCZOS))
    out_image = np.zeros((size, size, 3), dtype=np.uint8)
    out_image[:new_h, :new_w] = image
    return out_image


def foreground_crop(
    image: torch.Tensor, mask: torch.Tensor, draws: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Square crop of side CROP_SCALE x S around a foreground pixel, resized back to S x S.

    `draws` are four uniforms in [0, 1): side, which foreground pixel, row and column offsets. The
    chosen pixel stays inside the crop, so a mask with foreground keeps it. The crop is taken from the
    padded square, so it may include padding. The image is resized anti-aliased (bilinear), the mask
    by nearest neighbour, so it stays binary.
    """
    size = image.shape[-1]
    low, high = CROP_SCALE
    side = max(1, min(size, round(size * (low + (high - low) * draws[0]))))
    foreground = torch.nonzero(mask[0] > 0.5)
    if len(foreground):
        row, col = foreground[min(int(draws[1] * len(foreground)), len(foreground) - 1)].tolist()
    else:
        row = col = min(int(draws[1] * size), size - 1)
    top = _offset(row, side, size, draws[2])
    left = _offset(col, side, size, draws[3])
    image = image[:, top:top + side, left:left + side]
    mask = mask[:, top:top + side, left:left + side]
    image = F.resize(image, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True).clamp(0.0, 1.0)
    mask = F.resize(mask, [size, size], interpolation=InterpolationMode.NEAREST)
    return image, mask


def _offset(anchor: int, side: int, size: int, draw: float) -> int:
    """A window start in [anchor - side + 1, anchor] that keeps the window inside [0, size)."""
    lowest, highest = max(0, anchor - side + 1), min(anchor, size - side)
    return lowest + min(int(draw * (highest - lowest + 1)), highest - lowest)


def augment(
    image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, crop: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip / rotation / brightness / saturation of a 3xHxW [0,1] image and its 1xHxW {0,1} mask,
    preceded by a foreground-keeping crop when `crop` is set.

    Every call draws the same numbers from `rng` whatever is applied (seven, plus five with `crop`),
    so the stream of augmentations depends only on the rng seed.
    """
    if crop:
        crop_draws = rng.random(5)
        if crop_draws[0] < CROP_P:
            image, mask = foreground_crop(image, mask, crop_draws[1:])
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
