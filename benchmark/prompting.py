"""A row's prompt mode: what a SAM-family model is asked with, and whether the ground truth built it.

The paper drives every SAM-family cell with one text prompt through the Text Affine Layer (TAL);
MedSAM, LiteMedSAM and SAM are box-prompted models, and the other PEFT-for-SAM benchmark (peft-sam /
micro-sam) trains and scores with boxes and points taken from the ground truth. A row's `prompt`
says which (docs/prompts.md):

- `text` (the default, the paper's): the TAL token only;
- `box`: one box through the backbone's own prompt encoder, `box: image` (the field of view, no
  ground truth) or `box: mask` (the tight box of the whole ground-truth mask, MedSAM's protocol),
  each corner of a training box optionally moved by up to `jitter` pixels (seeded; test boxes are
  exact, as MedSAM trains and tests);
- `points`: `positive` points on the ground truth and `negative` points off it (seeded);
- `text+box`: the TAL token followed by the box's two corner tokens.

A prompt built from the ground truth at test time is an "oracle" prompt: every output says so.
Pure Python (no torch): config validation imports it.
"""
from __future__ import annotations

from dataclasses import dataclass

MODES = ("text", "box", "points", "text+box")
BOX_SOURCES = ("image", "mask")
DEFAULT_POINTS = {"positive": 5, "negative": 5}
KEYS = ("mode", "box", "jitter", "positive", "negative")
BOX_WORDS = {"image": "whole-image box", "mask": "ground-truth box"}


@dataclass(frozen=True)
class PromptSpec:
    """One row's prompt: the mode, the box source and jitter (box modes), the point counts (points)."""

    mode: str = "text"
    box: str | None = None
    jitter: int = 0
    positive: int = 0
    negative: int = 0

    @property
    def text(self) -> bool:
        """Whether the TAL's text token is part of the prompt (and the TAL trains)."""
        return self.mode in ("text", "text+box")

    @property
    def uses_box(self) -> bool:
        return self.mode in ("box", "text+box")

    @property
    def uses_points(self) -> bool:
        return self.mode == "points"

    @property
    def oracle(self) -> bool:
        """Whether the ground truth builds the test-time prompt."""
        return self.uses_points or (self.uses_box and self.box == "mask")

    def describe(self) -> str:
        """The prompt in words, as tables print it: 'text', 'whole-image box', '5+/5- ground-truth points (oracle)'."""
        if self.mode == "text":
            return "text"
        if self.uses_points:
            words = f"{self.positive}+/{self.negative}- ground-truth points"
        else:
            words = BOX_WORDS[self.box] + (f" (±{self.jitter} px in training)" if self.jitter else "")
            words = f"text + {words}" if self.text else words
        return f"{words} (oracle)" if self.oracle else words

    def as_config(self) -> dict:
        """The complete `prompt` mapping of a row (what its fingerprint hashes)."""
        if self.uses_points:
            return {"mode": self.mode, "positive": self.positive, "negative": self.negative}
        return {"mode": self.mode, "box": self.box, "jitter": self.jitter}

    def record(self) -> dict:
        """The summary's `prompt` section."""
        return {"mode": self.mode, "box": self.box, "jitter": self.jitter, "positive": self.positive,
                "negative": self.negative, "oracle": self.oracle, "description": self.describe()}


TEXT = PromptSpec()
NO_PROMPT_RECORD = {"mode": "none", "box": None, "jitter": 0, "positive": 0, "negative": 0, "oracle": False,
                    "description": "none (a model without prompts)"}


def parse_prompt(raw: dict | None) -> PromptSpec:
    """The PromptSpec a row's `prompt` mapping states (None: text); ValueError naming what is wrong."""
    if raw is None:
        return TEXT
    if not isinstance(raw, dict):
        raise ValueError(f"prompt must be a mapping such as {{mode: box, box: image}}, got {raw!r}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"prompt: unknown key(s) {unknown}; known: {', '.join(KEYS)}")
    mode = raw.get("mode", "text")
    if mode not in MODES:
        raise ValueError(f"prompt.mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "text":
        extra = sorted(set(raw) - {"mode"})
        if extra:
            raise ValueError(f"prompt.mode text takes no {extra}")
        return TEXT
    if mode == "points":
        return _points(raw)
    return _box(mode, raw)


def _points(raw: dict) -> PromptSpec:
    if "box" in raw or "jitter" in raw:
        raise ValueError("prompt.mode points takes positive and negative, not box or jitter")
    counts = {key: raw.get(key, default) for key, default in DEFAULT_POINTS.items()}
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"prompt.{key} must be a non-negative integer, got {value!r}")
    if counts["positive"] < 1:
        raise ValueError("prompt.mode points needs at least one positive point (prompt.positive >= 1)")
    return PromptSpec("points", positive=counts["positive"], negative=counts["negative"])


def _box(mode: str, raw: dict) -> PromptSpec:
    if "positive" in raw or "negative" in raw:
        raise ValueError(f"prompt.mode {mode} takes box and jitter, not positive or negative")
    source = raw.get("box")
    if source not in BOX_SOURCES:
        raise ValueError(f"prompt.mode {mode} needs box: image (the field of view, no ground truth) or "
                         f"box: mask (the ground truth's tight box, an oracle prompt); got {source!r}")
    jitter = raw.get("jitter", 0)
    if not isinstance(jitter, int) or isinstance(jitter, bool) or jitter < 0:
        raise ValueError(f"prompt.jitter must be a non-negative whole number of pixels, got {jitter!r}")
    return PromptSpec(mode, box=source, jitter=jitter)


def entry_prompt(entry: dict) -> PromptSpec:
    """The prompt of a method row (config validation has completed and checked it)."""
    return parse_prompt(entry.get("prompt"))


def summary_prompt(summary: dict) -> dict:
    """A summary's prompt record; summaries written before prompt modes were text-prompted."""
    record = summary.get("prompt")
    if record is not None:
        return record
    return NO_PROMPT_RECORD if summary["method"].get("group") == "baseline" else TEXT.record()
