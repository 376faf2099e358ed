"""Deterministic synthetic vessel images, so the whole pipeline runs and is tested without real data.

Two modalities bracket the paper's datasets: ``bright_speckle`` (bright vessels on dark speckle, like
OCT-A / DSA: ROSE, DIAS) and ``dark_fundus`` (dark vessels on a bright reddish fundus inside a circular
field of view, like DRIVE / X-ray angiography). Geometry is drawn once (branching tortuous trees) and
both the mask and the image are rendered from it, so the mask is exactly the drawn vessel region.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from benchmark.errors import DatasetError
from benchmark.io import ordinary_mode


GENERATOR_VERSION = "1"
MODALITIES = ("bright_speckle", "dark_fundus")

_REFERENCE_SIZE = 256  # widths and lengths below are in pixels at this size and scale with it
_TRUNK_DIAMETER = (7.0, 10.0)
_MIN_DIAMETER = 3.0  # never thinner: a 4x-downsampled decoder must still see every vessel
_STEP = 0.75  # centerline sampling in pixels; < 1 keeps the rasterised centerline connected
_MAX_DEPTH = 8
_MAX_ROOTS = 3
_AREA_FRACTION = (0.10, 0.17)  # growth budget; overlaps make the drawn fraction a bit smaller
_MIN_AREA_FRACTION = 0.08  # below this (trees left the field early) the geometry is drawn again
_ATTEMPTS = 5


@dataclass(frozen=True)
class _Branch:
    """A segment still to be grown: where it starts, its heading, radius and contrast."""

    start: np.ndarray
    heading: float
    radius: float
    contrast: float
    depth: int


def generate_image(modality: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return an RGB uint8 image (size x size x 3) and its bool vessel mask (size x size)."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    scale = size / _REFERENCE_SIZE
    if modality == "bright_speckle":
        inside = np.ones((size, size), dtype=bool)
        center = disc_center = None
    else:
        center = size / 2 + rng.uniform(-0.02, 0.02, 2) * size
        inside = _disc(size, center, rng.uniform(0.44, 0.48) * size)
        side = rng.choice([-1.0, 1.0])
        disc_center = center + np.array([rng.uniform(-0.05, 0.05), side * rng.uniform(0.18, 0.26)]) * size
    best: tuple[np.ndarray, np.ndarray] | None = None
    for _ in range(_ATTEMPTS):
        roots = _border_roots(rng, size) if disc_center is None else _disc_roots(rng, disc_center, center)
        n_roots = int(rng.integers(1, _MAX_ROOTS + 1))
        mask, profile = _rasterise(*_grow_vessels(rng, roots, n_roots, inside, scale), size)
        mask &= inside
        if best is None or mask.sum() > best[0].sum():
            best = (mask, profile * inside)
        if mask.mean() >= _MIN_AREA_FRACTION:
            break
    mask, profile = best
    if disc_center is None:
        return _render_bright_speckle(rng, profile, scale), mask
    return _render_dark_fundus(rng, profile, inside, disc_center, scale), mask


def _disc(size: int, center: np.ndarray, radius: float) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


def _trunk_radius(rng: np.random.Generator, scale: float) -> float:
    return max(rng.uniform(*_TRUNK_DIAMETER) * scale, _MIN_DIAMETER) / 2


def _border_roots(rng: np.random.Generator, size: int) -> list[tuple[np.ndarray, float]]:
    """Candidate roots on random image borders heading inwards (vessels entering the field, as in OCT-A / DSA).

    Headings are angles with (row, col) direction (sin, cos).
    """
    roots = []
    for _ in range(_MAX_ROOTS):
        side = rng.integers(4)
        along = rng.uniform(0.15, 0.85) * (size - 1)
        start, inward = {
            0: (np.array([0.0, along]), np.pi / 2),
            1: (np.array([size - 1.0, along]), -np.pi / 2),
            2: (np.array([along, 0.0]), 0.0),
            3: (np.array([along, size - 1.0]), np.pi),
        }[side]
        roots.append((start, inward + rng.uniform(-0.5, 0.5)))
    return roots


def _disc_roots(
    rng: np.random.Generator, disc_center: np.ndarray, fov_center: np.ndarray
) -> list[tuple[np.ndarray, float]]:
    """Candidate roots leaving the optic disc: upper and lower arcades towards the macula, then a nasal one."""
    toward_center = np.arctan2(*(fov_center - disc_center))
    return [
        (disc_center.copy(), toward_center + offset * rng.uniform(0.7, 1.2) + rng.uniform(-0.2, 0.2))
        for offset in (1.0, -1.0, np.pi)
    ]


def _grow_vessels(
    rng: np.random.Generator,
    roots: list[tuple[np.ndarray, float]],
    n_roots: int,
    inside: np.ndarray,
    scale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grow `n_roots` trees breadth-first until the area budget is spent; return centerline samples.

    The spare roots are grown only if every tree left the field of view before the budget was spent.
    """
    size = inside.shape[0]
    budget = rng.uniform(*_AREA_FRACTION) * size * size
    min_radius = max(_MIN_DIAMETER * scale, _MIN_DIAMETER) / 2
    trunks = deque(
        _Branch(start, heading, _trunk_radius(rng, scale), rng.uniform(0.75, 1.0), 0) for start, heading in roots
    )
    queue = deque(trunks.popleft() for _ in range(n_roots))
    used = 0.0
    points, radii, contrasts = [], [], []
    while (queue or trunks) and used < budget:
        branch = queue.popleft() if queue else trunks.popleft()
        xy, r, c, complete = _segment(rng, branch, inside, scale, min_radius)
        if len(xy) == 0:
            continue
        points.append(xy)
        radii.append(r)
        contrasts.append(c)
        used += float(np.sum(2 * r * _STEP))
        if complete and branch.depth < _MAX_DEPTH:
            queue.extend(_children(rng, branch, xy, r[-1], c[-1], min_radius))
    if not points:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    return np.concatenate(points), np.concatenate(radii), np.concatenate(contrasts)


def _segment(
    rng: np.random.Generator, branch: _Branch, inside: np.ndarray, scale: float, min_radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """A tortuous curve: heading = integrated smooth random curvature; stops where it leaves `inside`."""
    size = inside.shape[0]
    length = rng.uniform(0.12, 0.28) * size
    n = max(int(length / _STEP), 2)
    curvature = ndi.gaussian_filter1d(rng.standard_normal(n), sigma=15 * scale / _STEP, mode="nearest")
    curvature *= 0.012 / scale / (curvature.std() + 1e-12)
    heading = branch.heading + np.cumsum(curvature) * _STEP
    steps = _STEP * np.stack([np.sin(heading), np.cos(heading)], axis=1)
    xy = branch.start + np.cumsum(steps, axis=0)
    pixel = np.round(xy).astype(int)
    ok = np.all((pixel >= 0) & (pixel < size), axis=1)
    ok[ok] = inside[pixel[ok, 0], pixel[ok, 1]]
    stop = int(np.argmin(ok)) if not ok.all() else n
    t = np.linspace(0.0, 1.0, n)[:stop]
    radius = np.maximum(branch.radius * (1 - 0.12 * t), min_radius)
    wobble = ndi.gaussian_filter1d(rng.standard_normal(n), sigma=20 * scale / _STEP, mode="nearest")
    wobble = wobble[:stop] / (wobble.std() + 1e-12)
    contrast = np.clip(branch.contrast * (1 + 0.25 * wobble), 0.35, 1.0)
    return xy[:stop], radius, contrast, stop == n


def _children(
    rng: np.random.Generator, parent: _Branch, xy: np.ndarray, radius: float, contrast: float, min_radius: float
) -> list[_Branch]:
    """Bifurcation: a major child nearly continuing the parent and a thinner minor one splitting off."""
    end_heading = np.arctan2(*(xy[-1] - xy[-2]))
    side = rng.choice([-1.0, 1.0])
    major = _Branch(
        xy[-1],
        end_heading + side * rng.uniform(0.1, 0.45),
        max(radius * rng.uniform(0.8, 0.92), min_radius),
        contrast * rng.uniform(0.85, 1.0),
        parent.depth + 1,
    )
    minor = _Branch(
        xy[-1],
        end_heading - side * rng.uniform(0.5, 1.1),
        max(radius * rng.uniform(0.55, 0.75), min_radius),
        contrast * rng.uniform(0.7, 0.95),
        parent.depth + 1,
    )
    return [major, minor]


def _rasterise(
    points: np.ndarray, radii: np.ndarray, contrasts: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Union of discs around the centerline, plus a tube-projection profile (chord length) for the image.

    Radii are binned at 0.5 px so each bin is one exact Euclidean distance transform.
    """
    mask = np.zeros((size, size), dtype=bool)
    profile = np.zeros((size, size))
    pixel = np.round(points).astype(int)
    keep = np.all((pixel >= 0) & (pixel < size), axis=1)
    pixel, binned, contrasts = pixel[keep], np.round(radii[keep] * 2) / 2, contrasts[keep]
    for radius in np.unique(binned):
        sel = binned == radius
        seeds = np.ones((size, size), dtype=bool)
        seeds[pixel[sel, 0], pixel[sel, 1]] = False
        contrast_at = np.zeros((size, size))
        contrast_at[pixel[sel, 0], pixel[sel, 1]] = contrasts[sel]
        distance, (near_r, near_c) = ndi.distance_transform_edt(seeds, return_indices=True)
        mask |= distance <= radius
        chord = np.sqrt(np.clip(1 - (distance / (radius + 0.75)) ** 2, 0, 1))
        np.maximum(profile, chord * contrast_at[near_r, near_c], out=profile)
    return mask, profile


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="reflect")
    return field / (field.std() + 1e-12)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _render_bright_speckle(rng: np.random.Generator, profile: np.ndarray, scale: float) -> np.ndarray:
    """Dark background with a faint capillary haze, bright vessels, multiplicative speckle."""
    size = profile.shape[0]
    background = (
        rng.uniform(0.06, 0.14)
        + 0.03 * _smooth_noise(rng, size, size / 10)
        + 0.04 * np.clip(_smooth_noise(rng, size, 1.5 * scale), 0, None)
    )
    image = background + rng.uniform(0.55, 0.8) * profile
    looks = rng.uniform(2.5, 5.0)
    speckle = ndi.gaussian_filter(rng.gamma(looks, 1 / looks, (size, size)), 0.6)
    image = image * speckle + 0.02 * rng.standard_normal((size, size))
    return np.repeat(_to_uint8(image)[:, :, None], 3, axis=2)


def _render_dark_fundus(
    rng: np.random.Generator, profile: np.ndarray, fov: np.ndarray, disc_center: np.ndarray, scale: float
) -> np.ndarray:
    """Reddish fundus: vignetted low-frequency illumination, bright optic disc, vessels absorbing most in green."""
    size = profile.shape[0]
    rows, cols = np.mgrid[0:size, 0:size]
    fov_center = np.array([rows[fov].mean(), cols[fov].mean()])
    fov_radius = np.sqrt(fov.sum() / np.pi)
    radial = ((rows - fov_center[0]) ** 2 + (cols - fov_center[1]) ** 2) / fov_radius**2
    illumination = (1 - rng.uniform(0.25, 0.45) * radial) * (1 + 0.1 * _smooth_noise(rng, size, size / 12))
    color = np.array([rng.uniform(0.70, 0.85), rng.uniform(0.30, 0.42), rng.uniform(0.10, 0.18)])
    disc_sigma = rng.uniform(0.035, 0.05) * size
    disc = np.exp(-((rows - disc_center[0]) ** 2 + (cols - disc_center[1]) ** 2) / (2 * disc_sigma**2))
    texture = 0.025 * _smooth_noise(rng, size, 1.0 * scale)
    image = illumination[:, :, None] * color + disc[:, :, None] * np.array([0.2, 0.35, 0.2]) + texture[:, :, None]
    absorption = np.array([0.35, 0.6, 0.5]) * rng.uniform(0.8, 1.1)
    image = image * (1 - absorption * profile[:, :, None])
    image = image + 0.015 * rng.standard_normal((size, size, 3))
    return _to_uint8(image * fov[:, :, None])


def _file_names(total: int) -> list[str]:
    width = max(4, len(str(total - 1)))
    return [f"synth_{i:0{width}d}.png" for i in range(total)]


def _params(modality: str, n_train: int, n_test: int, size: int, seed: int, n_val: int) -> dict[str, str]:
    return {
        "modality": modality,
        "size": str(size),
        "seed": str(seed),
        "n_train": str(n_train),
        "n_test": str(n_test),
        "n_val": str(n_val),
        "generator_version": GENERATOR_VERSION,
    }


def _read_params(root: Path) -> dict[str, str]:
    marker = root / "SYNTHETIC.txt"
    if not marker.is_file():
        raise DatasetError(
            f"{root} exists but is not a complete synthetic dataset ({marker} missing); "
            "delete it or choose another root"
        )
    lines = marker.read_text(encoding="utf-8").splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("#"))


def _check_existing(root: Path, params: dict[str, str]) -> None:
    """Accept an existing dataset only if it was written with exactly these parameters and is whole."""
    found = _read_params(root)
    differing = {key: (found.get(key), value) for key, value in params.items() if found.get(key) != value}
    if differing:
        details = ", ".join(f"{key}: found {old!r}, asked {new!r}" for key, (old, new) in differing.items())
        raise DatasetError(
            f"{root} holds a synthetic dataset written with other parameters ({details}); "
            "delete it or choose another root"
        )
    total = int(params["n_train"]) + int(params["n_test"]) + int(params["n_val"])
    for name in _file_names(total):
        for folder in ("images", "masks"):
            if not (root / folder / name).is_file():
                raise DatasetError(f"synthetic dataset {root} is incomplete: {root / folder / name} missing")


def _write_files(directory: Path, params: dict[str, str]) -> None:
    modality, size, seed = params["modality"], int(params["size"]), int(params["seed"])
    n_train, n_test = int(params["n_train"]), int(params["n_test"])
    names = _file_names(n_train + n_test + int(params["n_val"]))
    (directory / "images").mkdir()
    (directory / "masks").mkdir()
    rows = ["imgs,split"]
    for index, name in enumerate(names):
        image, mask = generate_image(modality, size, np.random.default_rng(np.random.SeedSequence((seed, index))))
        Image.fromarray(image, mode="RGB").save(directory / "images" / name, format="PNG")
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(directory / "masks" / name, format="PNG")
        rows.append(f"{name},{'train' if index < n_train else 'test' if index < n_train + n_test else 'val'}")
    (directory / "data_split.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    header = [
        "# SYNTHETIC DATA: procedurally generated vessel images, not real medical images.",
        "# Written by benchmark.data.synthetic.write_dataset; results on it say nothing about clinical data.",
    ]
    body = [f"{key}: {value}" for key, value in params.items()]
    (directory / "SYNTHETIC.txt").write_text("\n".join(header + body) + "\n", encoding="utf-8")


def write_dataset(root: Path, modality: str, n_train: int, n_test: int, size: int = 256, seed: int = 0,
                  n_val: int = 0) -> Path:
    """Write a synthetic dataset in the SALT layout at `root`, atomically and idempotently.

    Image i is generated from rng(seed, i), so it does not depend on how many images are written:
    train images come first, then test, then the `n_val` validation images, so adding validation
    images leaves the train and test images unchanged.
    Files go to a hidden temporary sibling that is renamed into place at the end: a killed run leaves
    only that hidden directory, never a `root` that looks complete.
    """
    root = Path(root)
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"need at least one train and one test image, got n_train={n_train}, n_test={n_test}")
    if seed < 0 or n_val < 0:
        raise ValueError(f"seed and n_val must be non-negative, got seed={seed}, n_val={n_val}")
    params = _params(modality, n_train, n_test, size, seed, n_val)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        _check_existing(root, params)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        _write_files(partial, params)
        os.chmod(partial, ordinary_mode(directory=True))  # mkdtemp's 0o700 would hide the data from colleagues
        os.rename(partial, root)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (root / "SYNTHETIC.txt").is_file():
            raise
        _check_existing(root, params)  # another process finished the same dataset first
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return root
