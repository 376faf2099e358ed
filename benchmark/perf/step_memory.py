"""Peak memory of one training step, per measurement, on a GPU and on a CPU.

CUDA: the caching allocator's peak allocated bytes during the step, above what was allocated before
it (the model, its optimizer state). A CPU has no such counter, and the process's peak RSS never
falls, so it cannot tell one setting from the next in one process; there, every tensor storage an
operation creates during the step is counted from its creation until it is freed (a dispatch mode
sees every operation, forward and backward; a weak reference sees the free), and the peak of that
sum is the step's: activations kept for the backward pass, gradients, optimizer state created,
temporaries. Code compiled by torch.compile runs below the dispatcher, so on a CPU a compiled step
cannot be measured this way (None).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from benchmark.cost.measure import MB


class LiveTensorBytes(TorchDispatchMode):
    """The bytes of storages created under this mode and still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _freed(self, key: int, size: int) -> None:
        self._seen.discard(key)
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in self._seen or storage.nbytes() == 0:
                continue
            self._seen.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, storage.nbytes())
        return out


def step_peak_mb(run_step: Callable[[], object], device: torch.device, compiled: bool) -> float | None:
    """Run `run_step` once; the peak MB it added to what was allocated before it (None: a compiled
    step on a CPU, which this cannot see into)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run_step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / MB
    if compiled:
        run_step()
        return None
    tracker = LiveTensorBytes()
    with tracker:
        run_step()
    return tracker.peak / MB
