"""In-memory torch dataset over validated SALT pairs, with reproducible per-epoch augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmark.data.layout import SPLITS, DatasetError, Pair, load_image, load_mask
from benchmark.data.transforms import augment as augment_pair
from benchmark.data.transforms import resize_pad


def split_pairs(pairs: list[Pair], split: str) -> list[Pair]:
    """The pairs of one split, in their original order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return [pair for pair in pairs if pair.split == split]


class VesselDataset(Dataset):
    """Images decoded and resized once at construction (uint8 in memory), so epochs cost no file I/O.

    Augmentation for item i in epoch e is drawn from rng(seed, e, i): a resumed run, or any number of
    DataLoader workers, sees exactly the augmentations of an uninterrupted single-process run.
    Call `set_epoch` before creating each epoch's DataLoader iterator.
    """

    def __init__(self, pairs: list[Pair], size: int, augment: bool = False, seed: int = 0) -> None:
        if not pairs:
            raise DatasetError("VesselDataset needs at least one image/mask pair")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.pairs = list(pairs)
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.images = np.empty((len(pairs), size, size, 3), dtype=np.uint8)
        self.masks = np.empty((len(pairs), size, size), dtype=bool)
        for index, pair in enumerate(self.pairs):
            image, mask = load_image(pair.image), load_mask(pair.mask)
            if image.shape[:2] != mask.shape:
                raise DatasetError(
                    f"size mismatch: image {pair.image} is {image.shape[0]}x{image.shape[1]} but mask "
                    f"{pair.mask} is {mask.shape[0]}x{mask.shape[1]}"
                )
            self.images[index], self.masks[index] = resize_pad(image, mask, size)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch`."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255
        mask = torch.from_numpy(self.masks[index]).float().unsqueeze(0)
        if self.augment:
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, self.epoch, index)))
            image, mask = augment_pair(image, mask, rng)
        return {"image": image.contiguous(), "mask": mask.contiguous(), "id": self.pairs[index].id}
