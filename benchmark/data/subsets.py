"""Nested training subsets, for the training-set-size axis (a dataset's `train_subsets`): the first
n of one seeded order of the training images, so every smaller subset lies inside every larger
one, every row of a grid trains on the same images for a seed, and validation and test images are
never touched."""
from __future__ import annotations

import numpy as np

from benchmark.data.layout import Pair
from benchmark.errors import DatasetError


def nested_subset(pairs: list[Pair], n: int, seed: int) -> list[Pair]:
    """`pairs` with only n of its training images: a prefix of a permutation drawn from `seed`
    over the training images in id order. Validation and test pairs are kept as they are."""
    train = sorted((pair for pair in pairs if pair.split == "train"), key=lambda pair: pair.id)
    if n > len(train):
        raise DatasetError(f"a training subset of {n} images was asked for, but the dataset has {len(train)} "
                           "training images; lower train_subsets")
    order = np.random.default_rng(seed).permutation(len(train))
    kept = {train[index].id for index in order[:n]}
    return [pair for pair in pairs if pair.split != "train" or pair.id in kept]


def check_subsets(name: str, cfg: dict, pairs: list[Pair]) -> None:
    """Every `train_subsets` size of a dataset is smaller than its training set: checked by the
    dataset job, before any cell trains."""
    count = sum(pair.split == "train" for pair in pairs)
    too_large = [n for n in cfg.get("train_subsets", []) if n >= count]
    if too_large:
        raise DatasetError(f"dataset {name!r}: train_subsets {too_large} are not smaller than its {count} training "
                           "images (the whole set is always a column of its own)")
