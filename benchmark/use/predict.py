"""`saltbench predict`: a finished cell's merged model on images that have no ground truth.

Each image goes through exactly what evaluation does to a test image (benchmark.data: decoded by
load_image, longer side scaled to the input size and zero-padded; the model's forward in the
grid's precision and batch size; logits un-padded and resized bilinearly back to the image's own
size, thresholded at 0), so predicting a cell's own test images gives its stored predictions.
A row prompted with the whole-image box gets that box for every image, as evaluation gives it; a
row whose prompt is drawn from the ground truth (a ground-truth box, points) cannot predict
without one and is refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.data.layout import load_image
from benchmark.data.prompts import field_box, to_device
from benchmark.data.transforms import resize_pad_image, resized_shape
from benchmark.engine.evaluate import native_logits
from benchmark.engine.precision import autocast
from benchmark.errors import DatasetError, OraclePromptError
from benchmark.prompting import PromptSpec, entry_prompt
from benchmark.io import atomic_write
from benchmark.models.prompted import segment
from benchmark.use.restore import Restored

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".pgm", ".ppm")
PROBABILITY = "_prob"  # <stem>_prob.png: the sigmoid of the logits as 16-bit grey, 65535 = 1


def image_files(folder: Path) -> list[Path]:
    """The images of `folder` (not its subfolders) in name order; DatasetError when there are none,
    or when two share a stem (their masks would overwrite each other)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"no folder {folder}")
    files = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in SUFFIXES)
    if not files:
        raise DatasetError(f"{folder} holds no image ({', '.join(SUFFIXES)})")
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise DatasetError(f"{stems[path.stem].name} and {path.name} would both be written as {path.stem}.png")
        stems[path.stem] = path
    return files


def prompt_free(cell_entry: dict) -> PromptSpec:
    """The row's prompt when it needs no ground truth (text, the whole-image box); OraclePromptError
    naming the prompt otherwise."""
    spec = entry_prompt(cell_entry)
    if spec.oracle:
        raise OraclePromptError(f"this row is prompted with {spec.describe()}: its prompt is drawn from each "
                                "image's ground truth, which images to predict do not have; predict with a "
                                "text-prompted or whole-image-box row")
    return spec


def _prompts(spec: PromptSpec, arrays: list[np.ndarray], size: int) -> dict[str, torch.Tensor] | None:
    """The batch's whole-image boxes (each image's field of view at the input size, unjittered as in
    evaluation: the jitter perturbs training boxes only); None for text."""
    if not spec.uses_box:
        return None
    boxes = np.stack([field_box(resized_shape(*array.shape[:2], size)) for array in arrays])
    return {"box": torch.from_numpy(boxes), "present": torch.ones(len(arrays), dtype=torch.bool)}


def _write_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


@torch.no_grad()
def predict(restored: Restored, images: list[Path], out: Path, device: torch.device,
            probabilities: bool = False, progress: bool = True) -> list[Path]:
    """Write <stem>.png (0 background, 255 vessel; lossless) for every image into `out`, and with
    `probabilities` <stem>_prob.png; the mask paths. A progress bar on a terminal."""
    from tqdm import tqdm

    spec = prompt_free(restored.cell.entry)
    size, train_cfg = restored.config["input_size"], restored.config["train"]
    batch_size = train_cfg["batch_size"]
    written = []
    with tqdm(total=len(images), unit="image", disable=None if progress else True) as bar:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            arrays = [load_image(path) for path in chunk]
            batch = torch.stack([torch.from_numpy(resize_pad_image(a, size)).permute(2, 0, 1).float() / 255
                                 for a in arrays])
            with autocast(train_cfg["precision"], device):
                prompts = to_device(_prompts(spec, arrays, size), device)
                logits = segment(restored.model, batch.to(device), prompts)[:, 0].float().cpu()
            for path, array, item_logits in zip(chunk, arrays, logits):
                native = native_logits(item_logits, array.shape[:2], size)
                _write_png(out / f"{path.stem}.png", np.where(native.numpy() > 0, 255, 0).astype(np.uint8))
                if probabilities:
                    scaled = np.round(torch.sigmoid(native).numpy().astype(np.float64) * 65535).astype(np.uint16)
                    _write_png(out / f"{path.stem}{PROBABILITY}.png", scaled)
                written.append(out / f"{path.stem}.png")
            bar.update(len(chunk))
    return written
