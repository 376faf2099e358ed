"""Checks of a validated grid that build its models, without weights, on PyTorch's meta device
(imported only for a grid with methods: a grid of baselines never imports torch to be validated).

- `check_ranks(config)`: every method entry can be applied to every backbone that runs it. Each
  backbone is built without weights (on PyTorch's meta device: shapes, no storage, no checkpoint,
  no text encoder) and each entry is applied to it by the method's own code, so an `sv_rank`
  larger than a layer allows, a component the backbone does not define or a `ranks` key that
  is not a target fails at validation, naming the entry, the layer and the limit, instead of
  inside a cell job hours later.
- `check_devices(config)`: every method entry can run on the grid's device (QLoRA: bitsandbytes'
  4-bit layers are tried there), so a QLoRA row never turns into float32 LoRA or fails mid-grid.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from benchmark import check_cache
from benchmark.errors import ConfigError
from benchmark.grid import ROW_KEYS, entry_id


# In-place, shape-preserving tensor methods that parameter initialisers call; on a meta tensor
# they compute nothing, so they are skipped rather than traced through PyTorch's decompositions.
_INIT_METHODS = frozenset(
    getattr(torch.Tensor, name)
    for name in ("uniform_", "normal_", "zero_", "fill_", "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_",
                 "copy_", "exponential_", "bernoulli_", "random_", "log_normal_")
)


class _ValuesOnCPU(TorchFunctionMode):
    """Under the meta device: create torch.linspace / arange on the CPU (TinyViT and Hiera read
    drop-path rates out of a linspace with .item(), which a meta tensor cannot give), and skip
    initialisers on meta tensors."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _INIT_METHODS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        if func in (torch.linspace, torch.arange):
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@contextmanager
def _meta() -> Iterator[None]:
    with torch.device("meta"), _ValuesOnCPU():
        yield


def _architecture(name: str, input_size: int) -> tuple[nn.Module, dict[str, str]] | None:
    """The backbone's segmentation modules without weights, under the names the cell model uses
    (image_encoder, prompt_encoder, mask_decoder), and its components; None for a backbone this
    module does not know how to build bare (its ranks are then checked when a cell builds it)."""
    from benchmark.models import litemedsam, sam, sam2

    if name in sam.ARCHS:
        def build() -> nn.Module:
            return sam.build_sam(name, input_size)
        components = sam.COMPONENTS
    elif name in sam2.ARCHS:
        def build() -> nn.Module:
            base = sam2.build_sam2_base(name, input_size)
            return nn.ModuleDict(dict(image_encoder=base.image_encoder, prompt_encoder=base.sam_prompt_encoder,
                                      mask_decoder=base.sam_mask_decoder))
        components = sam2.COMPONENTS
    elif name == "litemedsam":
        def build() -> nn.Module:
            lite = litemedsam.lite_tools().build_lite_medsam()
            return nn.ModuleDict(dict(image_encoder=lite.image_encoder, prompt_encoder=lite.prompt_encoder,
                                      mask_decoder=lite.mask_decoder))
        components = litemedsam.COMPONENTS
    else:
        return None
    try:
        with _meta():
            model = build()
    except Exception:  # a constructor that needs real values: build on the CPU, then drop the storage
        with torch.device("cpu"):
            model = build()
        model = model.to("meta")
    return model, components


_cached_architecture = functools.lru_cache(maxsize=8)(_architecture)


def check_ranks(config: dict) -> None:
    """Raise ConfigError unless every method entry can be applied to every backbone that runs it.

    Each backbone is built at most once per process without weights on the meta device, and not at
    all while a passing verdict for the same entries under the same code is remembered
    (`benchmark.check_cache`); each entry
    it runs (`backbones.<key>.methods`, default all) is applied to it by the method's own `apply`,
    the code a cell runs, and then undone: targets must be components of the backbone, `ranks` / `sv_ranks` keys
    must be targets, and every adapted layer checks its own limits, naming itself and the limit
    (SALT: `sv_rank` in [0, min(out, in)] or a fraction in (0, 1]; PiSSA: `rank` at most
    min(out, in); a Conv2d counts as out x in*kh*kw). On meta tensors SVDs cost nothing.

    Ranks of LoRA-shaped updates (LoRA, DoRA, SALT's d_lora) above min(out, in) are not errors:
    the update is then over-parameterised but well defined, and the paper uses it (SAM2 LoRA r256
    on Hiera-B+, whose first-stage layers are 112 wide; SALT d_lora 256 with r' = 68 in Fig. 4a).
    """
    import methods

    with torch.random.fork_rng(devices=[]):  # building and adapting must not move the caller's random stream
        problems = _rank_problems(config, methods)
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"{len(problems)} method entr{'y' if len(problems) == 1 else 'ies'} cannot be applied:\n{lines}")


def _rank_problems(config: dict, methods) -> list[str]:
    problems: list[str] = []
    for key, backbone in config["backbones"].items():
        runs = backbone.get("methods")
        entries = [e for e in config["methods"] if runs is None or entry_id(e) in runs]
        entries = [e for e in entries if {"targets", "blocks"} & set(methods.get_method(e["name"]).hparams)]
        if not entries:
            continue
        inputs = {"backbone": backbone["name"], "input_size": backbone.get("input_size", config["input_size"]),
                  "entries": [{k: v for k, v in e.items() if k not in ROW_KEYS} for e in entries]}
        if check_cache.passed_before("ranks", inputs):
            continue
        found = _backbone_problems(key, backbone, inputs["input_size"], entries, methods)
        if not found:
            check_cache.remember_pass("ranks", inputs)
        problems += found
    return problems


def _backbone_problems(key: str, backbone: dict, input_size: int, entries: list[dict], methods) -> list[str]:
    """Apply every entry to the bare backbone by the method's own code, and undo it."""
    try:
        built = _cached_architecture(backbone["name"], input_size)
    except ValueError as error:
        return [f"backbones.{key} ({backbone['name']}): {error}"]
    if built is None:
        return []
    model, components = built
    originals = dict(model.named_modules())
    problems = []
    for entry in entries:
        spec = {k: v for k, v in entry.items() if k not in ROW_KEYS}
        try:
            with torch.device("meta"):
                methods.get_method(entry["name"]).apply(model, components, spec)
        except (ValueError, TypeError) as error:
            problems.append(f"methods entry {entry_id(entry)!r} on backbones.{key} ({backbone['name']}): {error}")
        except Exception:  # noqa: BLE001  a method that cannot run on meta tensors: its cell will check
            pass
        finally:
            _restore(model, originals)
    return problems


def check_devices(config: dict) -> None:
    """Raise ConfigError if a method entry cannot run on the grid's device (QLoRA's 4-bit layers
    where bitsandbytes has no kernels). `device: auto` is the GPU when one is visible, as cells resolve it.
    A GPU grid validated where no GPU is visible (a SLURM login node, `saltbench params`) is not
    probed here: every cell validates its config again on the node that runs it, before training."""
    import methods

    device = config["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        return
    problems = []
    for entry in config["methods"]:
        check = methods.get_method(entry["name"]).check_device
        if check is None:
            continue
        try:
            check(device)
        except ValueError as error:
            problems.append(f"methods entry {entry_id(entry)!r}: {error}")
    if problems:
        raise ConfigError("\n".join(problems))


def _restore(model: nn.Module, originals: dict[str, nn.Module]) -> None:
    """Put back every submodule a method replaced (methods swap layers in place; copying the
    whole model for each entry would cost more than building it)."""
    for name, module in originals.items():
        if not name:
            continue
        parent, _, child = name.rpartition(".")
        if getattr(originals[parent], child) is not module:
            setattr(originals[parent], child, module)
