"""glibc allocator settings for training on a CPU, and the re-exec that applies them.

glibc returns large freed blocks to the OS and page-faults them back on every training step;
keeping them in the heap makes a LiteMedSAM step on 2 CPU cores about 30% faster (measured).
glibc reads these settings only at process start, so a command that trains sets them and starts again.
"""
from __future__ import annotations

import os
import sys

ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}


def reexec_with_allocator_settings(module: str, argv: list[str]) -> None:
    """Start `python -m module argv` again with ALLOCATOR_ENV, once (a no-op when already set)."""
    if sys.platform.startswith("linux") and any(k not in os.environ for k in ALLOCATOR_ENV):
        os.execve(sys.executable, [sys.executable, "-m", module, *argv], {**ALLOCATOR_ENV, **os.environ})
