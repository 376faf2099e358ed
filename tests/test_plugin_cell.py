"""Proof of the plugin path: a method written outside saltbench runs through the real workflow.

The method file lives in a temporary folder and is named only by SALTBENCH_PLUGINS. Snakemake,
run on the repository's own Snakefile, trains and evaluates its cell on LiteMedSAM and writes
the table; nothing in benchmark/, methods/ or workflow/ knows the method. The adapter the cell
saved is then loaded into a freshly built backbone and re-evaluated to the same Dice.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import methods

REPO = Path(__file__).resolve().parent.parent
PLUGIN = '''
"""Per-output-channel gain on each targeted weight, W' = diag(g) W (an (IA)^3-like method)."""
import torch
from torch import Tensor, nn

from methods import AdaptedLayer, Method
from methods.base import adapt, resolve_hparams


class ChannelGain(AdaptedLayer):
    def __init__(self, base: nn.Module, layer_name: str = "") -> None:
        super().__init__(base, layer_name)
        self.gain = nn.Parameter(torch.ones(self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device))

    def adapted_weight(self) -> Tensor:
        return self.weight * self.gain.reshape(-1, *[1] * (self.weight.dim() - 1))

    def regularization(self) -> Tensor:
        return torch.linalg.vector_norm(self.gain - 1)


def apply(model: nn.Module, components: dict, spec: dict) -> list:
    hparams = resolve_hparams(METHOD, spec)
    return adapt(model, components, hparams["targets"], lambda name, component, module: ChannelGain(module, name))


METHOD = Method(
    name="chgain",
    description="Per-output-channel gain on targeted weights.",
    hparams={"targets": ["attn.qkv", "attn.proj"]},
    apply=apply,
)
'''


def grid(root: Path) -> dict:
    return {
        "name": "plugin_proof",
        "results_dir": str(root / "results"),
        "figures_dir": str(root / "figures"),
        "device": "cpu",
        "input_size": 256,
        "seeds": [0],
        "datasets": {"tiny": {"kind": "synthetic", "modality": "bright_speckle", "n_train": 2, "n_test": 1, "size": 256, "seed": 0}},
        "backbones": {"litemedsam": {"name": "litemedsam", "weights": "random", "tal_norm": "layer", "train_norms": False}},
        "methods": [{"id": "chgain", "name": "chgain", "label": "Channel gain (plugin)"}],
        "train": {"epochs": 1, "batch_size": 2, "lr": 1.0e-3, "augment": False, "threads": 2},
    }


@pytest.mark.slow
def test_plugin_method_runs_through_the_snakemake_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = tmp_path / "plugins" / "chgain.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    config_path = tmp_path / "grid.yaml"
    config_path.write_text(yaml.safe_dump(grid(tmp_path)))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "SALTBENCH_PLUGINS": str(plugin), "HF_HUB_OFFLINE": "1",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(tmp_path / "work"),
         "--configfile", str(config_path), "--cores", "1", "--resources", "gpu=1"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "results" / "logs").glob("*.log")))
    assert run.returncode == 0, run.stderr[-3000:] + logs[-3000:]

    cell_dir = tmp_path / "results" / "cells" / "litemedsam-chgain-tiny-s0"
    summary = json.loads((cell_dir / "summary.json").read_text())
    assert summary["method"]["name"] == "chgain" and summary["trained"]["epochs"] == 1
    table = (tmp_path / "figures" / "table1.md").read_text()
    assert "Channel gain (plugin)" in table

    monkeypatch.setenv("SALTBENCH_PLUGINS", str(plugin))
    monkeypatch.delitem(methods.REGISTRY, "chgain", raising=False)
    methods.load_plugins()
    try:
        check_adapter_reproduces_the_cell(config_path, cell_dir, summary)
    finally:
        methods.REGISTRY.pop("chgain")


def check_adapter_reproduces_the_cell(config_path: Path, cell_dir: Path, summary: dict) -> None:
    """A fresh backbone plus the saved adapter gives the cell's parameter count and per-image Dice."""
    from benchmark.config import load_config
    from benchmark.cost.parameters import count_by_component
    from benchmark.grid import expand_cells
    from benchmark.data.dataset import VesselDataset
    from benchmark.data.layout import split_pairs
    from benchmark.data.sources import load_pairs
    from benchmark.engine.adapters import load_adapter
    from benchmark.models.cell_model import build_cell_model
    from benchmark.engine.evaluate import evaluate
    from benchmark.models.litemedsam import COMPONENTS

    config = load_config(config_path)
    cell = expand_cells(config)["litemedsam-chgain-tiny-s0"]
    torch.manual_seed(cell.seed)  # weights: random draws the frozen backbone from the cell's seed, as run_cell does
    built = build_cell_model(cell, config)
    counts = count_by_component(built.model, COMPONENTS)
    qkv_out = sum(m.weight.shape[0] for n, m in methods.adapted_layers(built.model).items() if n.endswith("qkv"))
    assert counts["attn.qkv"] == qkv_out > 0 and counts["mlp"] == counts["neck"] == 0
    assert sum(counts.values()) == summary["params"]["trainable"]
    load_adapter(built.model, cell_dir / "adapter.safetensors", method=cell.entry, backbone="litemedsam", weights=built.weights)
    pairs = load_pairs(cell.dataset, config["datasets"][cell.dataset], Path(config["results_dir"]))
    test_set = VesselDataset(split_pairs(pairs, "test"), config["input_size"], augment=False, seed=cell.seed)
    rows = evaluate(methods.merge_model(built.model), test_set, torch.device("cpu"), 2)
    with (cell_dir / "per_image.csv").open() as handle:
        saved = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [row["id"] for row in saved]
    for row, before in zip(rows, saved, strict=True):
        assert abs(row["dice"] - float(before["dice"])) < 1e-6
