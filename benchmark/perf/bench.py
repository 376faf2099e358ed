"""Training-step and merged-inference speed of every PEFT method on whole models, side by side.

    saltbench bench [--device cuda] [--backbones sam_vit_b litemedsam] [--precisions fp32 bf16] ...

For each backbone (SAM ViT-B at 512 px, batch 5, with config/paper.yaml's backbone and method rows;
LiteMedSAM at 256 px, batch 2, with config/default.yaml's) and each method (frozen, full, S-SAM,
LoRA r4/r256, SALT r4/r256, and SALT with eq. 4 rebuilt literally), the model is built as a cell
builds it (models.cell_model.build_cell_model: the paper's trainable set, TAL, norms), then timed
for a few of the very training steps its cells take (engine.step, with the grid's `train` settings)
on random images under each precision, and its merged model for a few inference batches. Every number comes from the same process on the same device; ratios
are to `frozen` at the same precision and of bf16 to fp32 for the same method. SAM weights are
random (speed does not depend on them); SVD factors go through the on-disk cache, and each row says
how many factorisations its build computed and how long the build took.
"decoder" is decoder-only tuning with the frozen encoder's features cached, as a cell without
augmentation trains it: every timed step reuses the features (an epoch after the first);
"decoder_uncached" is the same model running its encoder every step (the first epoch).

`--variants` times each method's step under other lean-step settings side by side (engine.step:
eager or fused attention, torch.compile, activation checkpointing; `grid` is the grid's own): each
row gives its step time over the eager row's and its step's peak memory (perf.step_memory: CUDA's
peak allocated, or on a CPU the peak of the tensors the step creates; not inside compiled code).
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import methods
from benchmark.config import load_config
from benchmark.cost.measure import MB, peak_rss_mb
from benchmark.models.cell_model import build_cell_model
from benchmark.cost.parameters import count_parameters
from benchmark.engine.precision import enable_tf32
from benchmark.errors import CompileFailed
from benchmark.grid import Cell
from benchmark.allocator import reexec_with_allocator_settings
from benchmark.io import write_text
from benchmark.models.embedding_cache import EmbeddingCache
from benchmark.perf.literal_salt import DirectSALTLayer
from benchmark.perf.timing import device_label, inference_times, train_step_measure, train_step_times
from methods import svd_cache

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setup:
    """A backbone as a grid defines it, at the grid's input size, with a batch size."""

    grid: Path
    backbone: str
    batch: int


SETUPS = {
    "sam_vit_b": Setup(REPO / "config" / "paper.yaml", "sam_vit_b", 5),
    "litemedsam": Setup(REPO / "config" / "default.yaml", "litemedsam", 2),
}
METHOD_ROWS = ("frozen", "full", "svd", "lora_r4", "lora_r256", "salt_r4", "salt_r256", "salt_literal_r4",
               "salt_literal_r256", "decoder", "decoder_uncached")
COLUMNS = ("backbone", "input", "batch", "method", "precision", "variant", "build_s", "svd_computed", "trainable",
           "train_images_per_s", "train_x_frozen", "bf16_over_fp32", "step_x_eager", "step_peak_mb", "peak_memory_mb",
           "memory_kind", "infer_images_per_s", "infer_x_frozen", "device")
# Lean-step settings a row's step runs with, over the grid's `train` ("grid": as the grid says).
_EAGER = {"attention": "eager", "activation_checkpointing": False, "compile": False}
VARIANTS = {
    "grid": {},
    "eager": _EAGER,
    "sdpa": {**_EAGER, "attention": "sdpa"},
    "sdpa+compile": {**_EAGER, "attention": "sdpa", "compile": True},
    "eager+checkpointing": {**_EAGER, "activation_checkpointing": True},
    "sdpa+checkpointing": {**_EAGER, "attention": "sdpa", "activation_checkpointing": True},
}


def method_entry(config: dict, row: str) -> tuple[dict, bool]:
    """The grid's entry for `row` (its first entry of that method, at the row's rank), and whether
    SALT's rebuild is swapped for the literal eq. 4 product."""
    literal = row.startswith("salt_literal")
    if row in ("full", "decoder", "decoder_uncached"):
        return {"id": row, "name": row.removesuffix("_uncached")}, False
    name, _, rank = row.replace("salt_literal", "salt").partition("_r")
    entries = [e for e in config["methods"] if e["name"] == name]
    if not entries:
        raise SystemExit(f"{row}: the grid has no {name!r} method to take its targets from")
    entry = dict(next((e for e in entries if str(e.get("rank")) == rank), entries[0]))
    if rank:
        entry["rank"] = int(rank)
    entry["id"] = row
    return entry, literal


def grid_for_bench(setup: Setup, cache: Path) -> dict:
    """The setup's grid with random SAM weights (speed does not depend on them) and the text
    embedding cached under `cache`; nothing else changes."""
    config = load_config(setup.grid, check_paths=False)
    backbone = config["backbones"][setup.backbone]
    if backbone["name"] != "litemedsam":  # LiteMedSAM's real weights are installed; SAM's are downloads
        backbone["weights"] = "random"
        if backbone.get("text_checkpoint"):
            backbone["text_checkpoint"] = "random"
    config["results_dir"] = str(cache)
    return config


def build(setup: Setup, config: dict, row: str, cache: Path) -> tuple[nn.Module, float, int]:
    """(model, build seconds, SVD factorisations computed) for one method row."""
    entry, literal = method_entry(config, row)
    cell = Cell(f"bench-{row}", 0, next(iter(config["datasets"])), "zero-shot" if entry["name"] == "frozen" else "peft",
                entry, setup.backbone)
    svd_dir = cache / "svd"
    before = len(list(svd_dir.glob("svd-*"))) if svd_dir.exists() else 0
    torch.manual_seed(0)  # the same frozen weights for every row, so S-SAM and SALT share factors
    began = time.perf_counter()
    with svd_cache.cached_in(svd_dir):
        model = build_cell_model(cell, config).model
    seconds = time.perf_counter() - began
    if literal:
        for layer in methods.adapted_layers(model).values():
            layer.__class__ = DirectSALTLayer  # same tensors, U ReLU(Sigma') V^T rebuilt literally
    if row == "decoder":  # as a cell trains it without augmentation; "decoder_uncached" runs the encoder every step
        model.embedding_cache = EmbeddingCache()
    computed = (len(list(svd_dir.glob("svd-*"))) if svd_dir.exists() else 0) - before
    return model, seconds, computed


def _reset_peak(device: torch.device) -> str:
    """Start a per-row memory peak on CUDA. On a CPU the process's peak RSS is all there is, and it
    never falls (the allocator settings keep freed memory), so rows after a large one repeat its peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "accelerator peak allocated, per row"
    return "host peak RSS of the process so far (monotone, not per row)"


def _peak_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / MB if device.type == "cuda" else peak_rss_mb()


def train_speed(model: nn.Module, train_cfg: dict, size: int, batch: int, device: torch.device, warmup: int,
                steps: int) -> float:
    """Fastest seconds of one training step over `steps` steps: the step least disturbed by anything
    else on the machine (for ratios between methods; `saltbench plan` projects from the median)."""
    return min(train_step_times(model, train_cfg, size, batch, device, warmup, steps))


def variant_model(model: nn.Module, variant: str) -> nn.Module:
    """The model a variant's steps run: a copy where it compiles (a compiled encoder stays compiled)."""
    return copy.deepcopy(model) if VARIANTS[variant].get("compile") else model


def inference_speeds(models: dict[str, nn.Module], size: int, batch: int, precision: str, device: torch.device,
                     warmup: int, steps: int) -> dict[str, float]:
    """Fastest seconds of one forward pass of each merged model."""
    return {row: min(values) for row, values in inference_times(models, size, batch, precision, device, warmup, steps).items()}


def run(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    enable_tf32(device)
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="saltbench-bench-"))
    records, failures = [], []
    for name in args.backbones:
        setup = SETUPS[name]
        batch = args.batch or setup.batch
        config = grid_for_bench(setup, cache)
        size = config["input_size"]
        merged: dict[str, nn.Module] = {}
        rows = []
        for row in args.methods:
            model, build_seconds, computed = build(setup, config, row, cache)
            model = model.to(device)
            trainable, _ = count_parameters(model)
            merged[row] = methods.merge_model(copy.deepcopy(model)).to(device)
            if hasattr(merged[row], "embedding_cache"):
                merged[row].embedding_cache = None  # inference encodes every image, as a test set does
            for precision, variant in ((p, v) for p in args.precisions for v in args.variants):
                kind = _reset_peak(device)
                train_cfg = {**config["train"], "precision": precision, **VARIANTS[variant]}
                try:
                    times, step_peak = train_step_measure(variant_model(model, variant), train_cfg, size, batch, device,
                                                          args.warmup, args.steps)
                except CompileFailed as error:  # a row of its own in the table's notes; the other rows go on
                    failures.append(f"{name} {row} {precision} {variant}: {str(error).splitlines()[0]}")
                    print(failures[-1], flush=True)
                    continue
                step, peak = min(times), _peak_mb(device)
                rows.append({
                    "backbone": name, "input": size, "batch": batch, "method": row, "precision": precision,
                    "variant": variant, "build_s": round(build_seconds, 1), "svd_computed": computed,
                    "trainable": trainable, "train_images_per_s": batch / step,
                    "step_peak_mb": "" if step_peak is None else round(step_peak), "peak_memory_mb": round(peak),
                    "memory_kind": kind, "device": device_label(device),
                })
                print(f"{name} {row} {precision} {variant}: {batch / step:.3f} train images/s, step peak "
                      f"{'n/a' if step_peak is None else f'{step_peak:.0f} MB'}, peak {peak:.0f} MB ({kind}); "
                      f"build {build_seconds:.1f} s, {computed} SVDs computed", flush=True)
            del model
        for precision in args.precisions:
            seconds = inference_speeds(merged, size, batch, precision, device, args.warmup, args.steps)
            for record in rows:
                if record["precision"] == precision:
                    record["infer_images_per_s"] = batch / seconds[record["method"]]
        records += rows
        del merged
    return _with_ratios(records), failures


def _with_ratios(records: list[dict]) -> list[dict]:
    """Each row's speed over `frozen` at the same (backbone, precision, variant), bf16 over fp32, and
    the step time over the `eager` variant's of the same method."""
    by_key = {(r["backbone"], r["method"], r["precision"], r["variant"]): r for r in records}
    for record in records:
        backbone, method, precision, variant = (record[k] for k in ("backbone", "method", "precision", "variant"))
        frozen = by_key.get((backbone, "frozen", precision, variant))
        fp32 = by_key.get((backbone, method, "fp32", variant))
        eager = by_key.get((backbone, method, precision, "eager"))
        record["train_x_frozen"] = "" if frozen is None else round(frozen["train_images_per_s"] / record["train_images_per_s"], 3)
        record["infer_x_frozen"] = "" if frozen is None else round(frozen["infer_images_per_s"] / record["infer_images_per_s"], 3)
        record["bf16_over_fp32"] = ("" if fp32 is None or record["precision"] == "fp32" else
                                    round(record["train_images_per_s"] / fp32["train_images_per_s"], 3))
        record["step_x_eager"] = "" if eager is None else round(eager["train_images_per_s"] / record["train_images_per_s"], 3)
    for record in records:
        record["train_images_per_s"] = round(record["train_images_per_s"], 3)
        record["infer_images_per_s"] = round(record["infer_images_per_s"], 3)
    return records


def to_csv(records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def _number(value: object, digits: int) -> str:
    return "" if value == "" else f"{value:.{digits}f}"


def to_markdown(records: list[dict], args: argparse.Namespace) -> str:
    header = ("backbone", "method", "precision", "step", "train img/s", "step x frozen", "step x eager",
              "bf16 speed-up", "step peak MB", "peak MB", "merged inference img/s", "inference x frozen", "build s (SVDs)")
    lines = [f"Device: {records[0]['device']}. Fastest of {args.steps} steps after {args.warmup} warm-up (inference: "
             "round-robin over the merged models); "
             "x frozen = time per image over frozen's at the same precision and step (1.00 = as fast); x eager = step "
             "time over the same method's eager step; step peak = the step's own peak memory (perf.step_memory; empty "
             f"for a compiled step on a CPU); peak memory: {records[0]['memory_kind']}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        cells = (f"{r['backbone']} @{r['input']} b{r['batch']}", r["method"], r["precision"], r["variant"],
                 f"{r['train_images_per_s']:.3f}", _number(r["train_x_frozen"], 2), _number(r["step_x_eager"], 2),
                 _number(r["bf16_over_fp32"], 2), str(r["step_peak_mb"]), str(r["peak_memory_mb"]),
                 f"{r['infer_images_per_s']:.2f}", _number(r["infer_x_frozen"], 3), f"{r['build_s']} ({r['svd_computed']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(prog="saltbench bench", description=__doc__.splitlines()[0])
    command.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    command.add_argument("--backbones", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    command.add_argument("--methods", nargs="+", default=list(METHOD_ROWS), choices=list(METHOD_ROWS))
    command.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    command.add_argument("--variants", nargs="+", default=["grid"], choices=list(VARIANTS),
                         help="lean-step settings to time each method's step under, side by side (default: the grid's "
                         "own): eager or sdpa attention, + torch.compile of the image encoder, + activation checkpointing")
    command.add_argument("--batch", type=int, default=0, help="override every backbone's batch size (default: 5 for "
                         "SAM ViT-B, 2 for LiteMedSAM, the grids' own)")
    command.add_argument("--warmup", type=int, default=2, help="untimed steps per row (default: %(default)s)")
    command.add_argument("--steps", type=int, default=5, help="timed steps per row (default: %(default)s)")
    command.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: every core this process may use)")
    command.add_argument("--cache", help="SVD and text-embedding cache folder (default: a new temporary one, so the "
                         "first S-SAM/SALT build of a backbone computes its SVDs and later ones reuse them)")
    command.add_argument("--out", default="figures/bench", help="folder for train_speed.{csv,md} (default: %(default)s)")
    return command


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    records, failures = run(args)
    table = to_markdown(records, args) + "".join(f"\nNot measured: {failure}\n" for failure in failures)
    print("\n" + table)
    out = Path(args.out)
    write_text(out / "train_speed.csv", to_csv(records))
    write_text(out / "train_speed.md", table)
    print(out / "train_speed.csv")


if __name__ == "__main__":
    reexec_with_allocator_settings("benchmark.perf.bench", sys.argv[1:])
    main(parser().parse_args(sys.argv[1:]))
