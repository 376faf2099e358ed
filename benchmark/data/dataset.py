"""In-memory torch dataset over validated pairs, with reproducible per-epoch augmentation and an
on-disk cache of the decoded, resized arrays shared by every job that reads the same files."""

from __future__ import annotations

import hashlib
from dataclasses import replace
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmark.data.layout import Pair, load_image, load_mask
from benchmark.data.prompts import make_prompt
from benchmark.data.transforms import augment as augment_pair
from benchmark.data.transforms import resize_pad, resized_shape
from benchmark.errors import DatasetError
from benchmark.io import atomic_write
from benchmark.prompting import TEXT, PromptSpec

PROMPT_STREAM = 7  # keeps prompt draws apart from the augmentation stream of the same (seed, epoch, item)
CACHE_VERSION = "1"  # bump when decoding or resize_pad changes what a cached array holds


class VesselDataset(Dataset):
    """Images decoded and resized once (uint8 in memory), so epochs cost no file I/O.

    With `cache_dir`, the decoded arrays are also stored there as one .npz per (files, size), keyed by
    every file's path, size and modification time: the other cell jobs on the same data load it
    instead of decoding again, and a changed file gets a new key.

    Augmentation for item i in epoch e is drawn from rng(seed, e, i): a resumed run, or any number of
    DataLoader workers, sees exactly the augmentations of an uninterrupted single-process run.
    Call `set_epoch` before creating each epoch's DataLoader iterator.

    With a box or point `prompt`, each item also carries its prompt (benchmark.data.prompts), drawn
    from the (augmented) mask at the input resolution: from rng(seed, epoch, i) when
    `resample_prompts` (training: a new prompt every epoch, as peft-sam trains), else from rng(seed,
    image id), the same for every row and every epoch (validation and test).
    """

    def __init__(self, pairs: list[Pair], size: int, augment: bool = False, seed: int = 0, crop: bool = False,
                 cache_dir: Path | None = None, prompt: PromptSpec = TEXT, resample_prompts: bool = False) -> None:
        if not pairs:
            raise DatasetError("VesselDataset needs at least one image/mask pair")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.pairs = list(pairs)
        self.size = size
        self.augment = augment
        self.crop = crop
        self.seed = seed
        self.epoch = 0
        self.prompt = prompt
        self.resample_prompts = resample_prompts
        cache = Path(cache_dir) / f"{self._cache_key()}-{size}.npz" if cache_dir is not None else None
        if cache is None or not self._load_cache(cache):
            self._decode()
            if cache is not None:
                atomic_write(cache, self._write_cache)

    def _cache_key(self) -> str:
        digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
        for pair in self.pairs:
            for path in (pair.image, pair.mask):
                stat = Path(path).stat()
                digest.update(f"{pair.id}|{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:24]

    def _decode(self) -> None:
        count, size = len(self.pairs), self.size
        self.images = np.empty((count, size, size, 3), dtype=np.uint8)
        self.masks = np.empty((count, size, size), dtype=bool)
        self.orig_sizes = np.empty((count, 2), dtype=np.int64)
        for index, pair in enumerate(self.pairs):
            image, mask = load_image(pair.image), load_mask(pair.mask)
            if image.shape[:2] != mask.shape:
                raise DatasetError(
                    f"size mismatch: image {pair.image} is {image.shape[0]}x{image.shape[1]} but mask "
                    f"{pair.mask} is {mask.shape[0]}x{mask.shape[1]}"
                )
            self.orig_sizes[index] = mask.shape
            self.images[index], self.masks[index] = resize_pad(image, mask, size)

    def _write_cache(self, path: Path) -> None:
        with Path(path).open("wb") as handle:
            np.savez(handle, ids=np.array([pair.id for pair in self.pairs]), images=self.images,
                     masks=np.packbits(self.masks, axis=-1), orig_sizes=self.orig_sizes)

    def _load_cache(self, path: Path) -> bool:
        """Fill the arrays from `path`; False (decode instead) if it is absent, unreadable or does not fit."""
        if not path.is_file():
            return False
        try:
            with np.load(path) as data:
                ids, images, packed, orig_sizes = data["ids"], data["images"], data["masks"], data["orig_sizes"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            print(f"{path}: unreadable dataset cache ({type(error).__name__}: {error}); decoding the images again",
                  flush=True)
            return False
        count, size = len(self.pairs), self.size
        if ids.tolist() != [pair.id for pair in self.pairs] or images.shape != (count, size, size, 3):
            return False
        self.images, self.orig_sizes = images, orig_sizes
        self.masks = np.unpackbits(packed, axis=-1, count=size).astype(bool)
        return True

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of `epoch`."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def native_mask(self, index: int) -> np.ndarray:
        """The mask of item `index` at the image's own size, decoded again from its file."""
        return load_mask(self.pairs[index].mask)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | tuple[int, int] | dict]:
        """image 3xSxS in [0, 1], mask 1xSxS in {0, 1}, id, orig_size (H, W) before resize_pad, and
        with a box or point prompt, `prompt` (benchmark.data.prompts.make_prompt)."""
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255
        mask = torch.from_numpy(self.masks[index]).float().unsqueeze(0)
        if self.augment:
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, self.epoch, index)))
            image, mask = augment_pair(image, mask, rng, crop=self.crop)
        height, width = (int(v) for v in self.orig_sizes[index])
        item = {"image": image.contiguous(), "mask": mask.contiguous(), "id": self.pairs[index].id,
                "orig_size": (height, width)}
        if self.prompt.mode != "text":
            # the box jitter perturbs training prompts only, as MedSAM trains; test boxes are exact
            spec = self.prompt if self.resample_prompts else replace(self.prompt, jitter=0)
            item["prompt"] = make_prompt(spec, mask[0].numpy() > 0.5, resized_shape(height, width, self.size),
                                         self._prompt_rng(index))
        return item

    def _prompt_rng(self, index: int) -> np.random.Generator:
        """Training: a stream per (seed, epoch, item) apart from augmentation's; else per (seed, image id)."""
        if self.resample_prompts:
            return np.random.default_rng(np.random.SeedSequence((self.seed, self.epoch, index, PROMPT_STREAM)))
        key = int.from_bytes(hashlib.sha256(self.pairs[index].id.encode()).digest()[:8], "little")
        return np.random.default_rng(np.random.SeedSequence((self.seed, key, PROMPT_STREAM)))
