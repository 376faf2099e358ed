"""Box and point prompts drawn from an image's mask at the network's input resolution (pure functions).

Coordinates are pixel indices (x, y) of the S x S network input, the frame every backbone's prompt
encoder is built for (its input_image_size is the network input size), so they pass to it unscaled.
A box is (x0, y0, x1, y1) with both corners inclusive, as MedSAM takes it. Every draw comes from the
numpy Generator the caller passes, seeded per (image, seed) for test images and per (seed, epoch,
image) for training images (benchmark.data.dataset), so a prompt is the same for every row of a grid.

A prompt built from the ground truth cannot exist for an image whose mask is empty: such an image
gets a placeholder prompt marked absent (`present` False) and the model predicts background
everywhere for it, without being asked (benchmark.models.prompted).
"""
from __future__ import annotations

import numpy as np
import torch

from benchmark.prompting import PromptSpec


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """The tight box (x0, y0, x1, y1), corners inclusive, of every foreground pixel; None if none."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float32)


def field_box(content: tuple[int, int]) -> np.ndarray:
    """The box of the field of view: the resized image without resize_pad's padding, (height, width)."""
    height, width = content
    return np.array([0, 0, width - 1, height - 1], dtype=np.float32)


def jittered(box: np.ndarray, amount: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Each coordinate moved by a whole number of pixels drawn uniformly from [-amount, amount],
    kept inside the S x S input and ordered (x0 <= x1, y0 <= y1). Draws four integers even at 0."""
    moved = box + rng.integers(-amount, amount + 1, size=4)
    moved = np.clip(moved, 0, size - 1)
    x0, x1 = sorted((moved[0], moved[2]))
    y0, y1 = sorted((moved[1], moved[3]))
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def _draw(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows of `candidates`, uniformly, without replacement when there are enough."""
    chosen = rng.choice(len(candidates), size=count, replace=len(candidates) < count)
    return candidates[chosen]


def sample_points(mask: np.ndarray, content: tuple[int, int], positive: int, negative: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """`positive` foreground pixels and `negative` background pixels of the field of view (the
    content region of the input), each set drawn uniformly (without replacement where it has
    enough pixels); as (x, y) coordinates N x 2 and labels N (1 positive, 0 negative). None when
    the mask has no foreground; a field of view without background gives positives only."""
    height, width = content
    field = mask[:height, :width].astype(bool)
    foreground = np.flatnonzero(field)  # flat indices in row-major order: no S x S x 2 coordinate array
    if foreground.size == 0:
        return None
    background = np.flatnonzero(~field)
    negative = negative if background.size else 0
    picked = [_draw(foreground, positive, rng)] + ([_draw(background, negative, rng)] if negative else [])
    rows, cols = np.unravel_index(np.concatenate(picked), (height, width))
    coords = np.stack([cols, rows], axis=1).astype(np.float32)  # (x, y)
    labels = np.array([1] * positive + [0] * negative, dtype=np.int64)
    return coords, labels


def make_prompt(spec: PromptSpec, mask: np.ndarray, content: tuple[int, int],
                rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """The prompt tensors of one image for the backbone's prompt encoder: `box` (4,) for box modes,
    `points` (N, 2) and `labels` (N,) for points, and `present` (a 0-d bool): False where the prompt
    needs ground truth that the empty mask cannot give (placeholders of the same shapes then)."""
    size = mask.shape[-1]
    if spec.uses_box:
        box = field_box(content) if spec.box == "image" else mask_box(mask)
        present = box is not None
        box = jittered(box if present else np.zeros(4, dtype=np.float32), spec.jitter, size, rng)
        return {"box": torch.from_numpy(box), "present": torch.tensor(present)}
    drawn = sample_points(mask, content, spec.positive, spec.negative, rng)
    count = spec.positive + spec.negative
    present = drawn is not None
    coords, labels = drawn if present else (np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=np.int64))
    if len(labels) < count:  # no background (or no mask) to draw from: SAM's "not a point" pads the rest
        coords = np.concatenate([coords, np.zeros((count - len(labels), 2), dtype=np.float32)])
        labels = np.concatenate([labels, np.full(count - len(labels), -1, dtype=np.int64)])
    return {"points": torch.from_numpy(coords), "labels": torch.from_numpy(labels),
            "present": torch.tensor(present)}


def stack_prompts(prompts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One batch of per-image prompts, key by key."""
    return {key: torch.stack([prompt[key] for prompt in prompts]) for key in prompts[0]}


def to_device(prompt: dict[str, torch.Tensor] | None, device: torch.device) -> dict[str, torch.Tensor] | None:
    """A batch's prompts on `device` (None, a text row's, stays None)."""
    return None if prompt is None else {key: value.to(device, non_blocking=True) for key, value in prompt.items()}
