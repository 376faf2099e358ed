"""Every error saltbench raises on purpose, in one place, so a caller (the CLI, Snakemake's job, a
test) can tell a user's mistake from a bug by its class, and a reader finds them all here.

This module imports nothing of the project: every layer may raise these.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot run; raised before any job starts."""


class DatasetError(ValueError):
    """A dataset folder that cannot be used as the config says (missing, unreadable or misnamed files)."""


class UnknownNameError(KeyError, ValueError):
    """A name no registry knows (method, baseline, backbone, dataset kind, published row); the
    message lists the known names. A KeyError for mapping-style lookups, a ValueError for callers
    that treat it as bad input; printed as its message, not repr'd as KeyError would."""

    def __str__(self) -> str:
        return str(self.args[0])


class AdapterMismatchError(ValueError):
    """An adapter file that does not fit the model it is loaded into."""


class NonFiniteLoss(RuntimeError):
    """Training diverged; the cell stops with no summary, its last good checkpoint kept."""


class NoFreeGpu(RuntimeError):
    """Every GPU slot of the machine is held by another cell."""


class Busy(RuntimeError):
    """Another process holds the lock of the same work (two runs of one cell)."""


class SummaryFormatError(ValueError):
    """A summary.json that does not have the fields of the summary format it claims (benchmark.summary)."""


class FetchError(RuntimeError):
    """A download that failed or did not match its recorded digest; nothing of it is kept."""


class CellNotFinished(RuntimeError):
    """A cell whose outputs are asked for (saltbench predict / export) before it finished training
    with the grid's present configuration."""


class NotMergeable(ValueError):
    """A model whose adapters cannot be folded into its backbone's weights (saltbench export)."""


class OraclePromptError(ValueError):
    """A row whose prompt is drawn from the ground truth, asked to segment images that have none
    (saltbench predict)."""


class CompileFailed(RuntimeError):
    """`train.compile: true` and torch.compile could not compile the image encoder; the cell stops
    with torch's message rather than training eagerly under a setting that says compiled."""
