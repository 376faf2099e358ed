"""The plugin contract shared by every PEFT method: adapted layers, target matching, injection.

A method never knows which backbone it adapts. The backbone names its components (regexes on
module names); a method spec picks components and ranks; the helpers here resolve that into
concrete nn.Linear / nn.Conv2d modules and swap them, in place, for AdaptedLayer subclasses.
"""
from __future__ import annotations

import copy
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from methods import rebuild, svd_cache

SUPPORTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
DEFAULT_TARGETS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp")

ApplyFn = Callable[[nn.Module, dict[str, str], dict], list[str]]
BuildFn = Callable[[str, str, nn.Module], "AdaptedLayer"]


@dataclass(frozen=True)
class Method:
    """A registered PEFT method.

    hparams: every spec key the method accepts besides "name", with its default; a config is
    checked against it so that a typo fails loudly instead of silently using a default.
    apply: (model, components, spec) -> names of the modules it replaced.
    label: the row name tables print for an entry without a `label` of its own (see `row_label`).
    row_name: entry -> its row name, for a method whose rows differ by more than `rank`, which
    Table 1 prints in a column of its own (the peft bridge: the tuner's name and settings).
    open_hparams: for a method whose accepted keys depend on the spec (the peft bridge takes the
    chosen tuner's config fields), spec -> the keys it accepts with their defaults; it raises
    ValueError naming the valid keys. None: `hparams` is the whole list.
    frozen_encoder: the image encoder stays wholly frozen, so the engine leaves the encoder's
    parameters (norms, positional embedding) out of the backbone's extra trainable set.
    check_device: device type ("cpu", "cuda") -> None, raising ValueError where the method cannot
    run there (QLoRA's 4-bit layers); called when a config is validated, before anything trains.
    """

    name: str
    description: str
    hparams: dict[str, object]
    apply: ApplyFn
    label: str = ""
    open_hparams: Callable[[Mapping[str, object]], dict[str, object]] | None = None
    frozen_encoder: bool = False
    check_device: Callable[[str], None] | None = None
    row_name: Callable[[Mapping[str, object]], str] | None = None

    def hparams_for(self, spec: Mapping[str, object]) -> dict[str, object]:
        """Every key `spec` may set, with its default."""
        return dict(self.hparams) if self.open_hparams is None else self.open_hparams(spec)

    def row_label(self, entry: Mapping[str, object]) -> str:
        """The name tables give a grid entry of this method: its own `label`; else `row_name`'s;
        else the method's `label`; else, for a method without one, its name and the settings
        that set the row apart ("chgain gain=0.5"; `rank` has a column of its own)."""
        if "label" in entry:
            return str(entry["label"])
        if self.row_name is not None:
            return self.row_name(entry)
        if self.label:
            return self.label
        defaults = {key: value for key, value in self.hparams_for(entry).items() if key != "rank"}
        return " ".join([self.name, *distinguishing_settings(entry, defaults)])


def distinguishing_settings(entry: Mapping[str, object], defaults: Mapping[str, object]) -> list[str]:
    """The settings of `defaults` to which `entry` gives another single value, in the entry's
    order, as a row name shows them: `r` as "r4", any other as "key=value". Lists and mappings
    (targets, per-component ranks) are left out: rows that differ only there need a `label`."""
    shown = []
    for key, value in entry.items():
        if key not in defaults or value == defaults[key] or not isinstance(value, (bool, int, float, str)):
            continue
        text = format(value, "g") if isinstance(value, float) else str(value)
        shown.append(f"r{text}" if key == "r" else f"{key}={text}")
    return shown


def weight_matrix(layer: nn.Module) -> Tensor:
    """The weight as an out x (in*kh*kw) matrix (a view): how SVD-based methods see a conv,
    as the official SALT code does."""
    return layer.weight.reshape(layer.weight.shape[0], -1)


def matrix_to_weight(matrix: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Inverse of weight_matrix: back to the layer's own weight shape."""
    return matrix.reshape(shape)


def thin_svd(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """U (out x r_max), sigma (r_max), Vh (r_max x in) of a frozen weight, with canonical signs.

    Computed in float64 and cast back: done once per layer, so accuracy is cheap, and a float32
    SVD of a 3072 x 768 matrix loses about 1e-5 of reconstruction accuracy.
    Each singular pair is flipped so that the largest-magnitude entry of U's column is positive
    (sklearn's svd_flip). LAPACK builds may return either sign, and SALT's dense X Y block mixes
    columns, so without a canonical sign an adapter saved on one machine would give a different
    weight when its backbone is decomposed again on another.
    Cached on disk inside svd_cache.cached_in(directory), keyed by the weight's bytes.
    """
    return svd_cache.cached(matrix.detach(), _canonical_svd)


def _canonical_svd(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    u, sigma, vh = torch.linalg.svd(matrix.to(torch.float64), full_matrices=False)
    signs = torch.sign(u.gather(0, u.abs().argmax(dim=0, keepdim=True)))
    u, vh = u * signs, vh * signs.T
    return u.to(matrix.dtype), sigma.to(matrix.dtype), vh.to(matrix.dtype)


def register_svd(layer: nn.Module, matrix: Tensor) -> None:
    """U, sigma, Vh as non-persistent buffers: they follow .to(device, dtype) once, are views when
    sliced, and stay out of state_dict because they are recomputed from the frozen weight."""
    u, sigma, vh = thin_svd(matrix)
    layer.register_buffer("U", u, persistent=False)
    layer.register_buffer("sigma", sigma, persistent=False)
    layer.register_buffer("Vh", vh, persistent=False)


class AdaptedLayer(nn.Module, ABC):
    """A frozen nn.Linear or nn.Conv2d plus a method's trainable tensors.

    The base weight and bias keep their attribute names (`weight`, `bias`) so that checkpoint
    keys of the frozen model do not move; they share storage with the original layer and are
    never trained. Subclasses define adapted_weight(); forward uses it with the base layer's
    own linear / conv semantics (a subclass may override forward with a cheaper route to the
    same function). `component` is set by adapt() to the target component that chose the layer.
    `regulariser` says in words what regularization() penalises (cell summaries report it).
    """

    regulariser = "none"
    mergeable = True  # False: merge() returns the layer itself and inference runs it unmerged
    note = ""  # said in the cell summary when set: a way this layer trains or evaluates differently

    def __init__(self, base: nn.Module, layer_name: str = "") -> None:
        super().__init__()
        if not isinstance(base, SUPPORTED):
            raise TypeError(f"{layer_name or 'layer'}: cannot adapt {type(base).__name__}; only nn.Linear and nn.Conv2d")
        self.layer_name = layer_name or type(base).__name__
        self.component = ""
        self.conv_args: dict[str, object] | None = None
        if isinstance(base, nn.Conv2d):
            if base.groups != 1 or base.padding_mode != "zeros":
                raise ValueError(
                    f"{self.layer_name}: only Conv2d with groups=1 and padding_mode='zeros' can be adapted "
                    f"(got groups={base.groups}, padding_mode={base.padding_mode!r})"
                )
            self.conv_args = {"stride": base.stride, "padding": base.padding, "dilation": base.dilation}
        self.weight = nn.Parameter(base.weight.detach(), requires_grad=False)
        bias = None if base.bias is None else nn.Parameter(base.bias.detach(), requires_grad=False)
        self.register_parameter("bias", bias)

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(out, in*kh*kw): the shape every method reasons in."""
        out_dim, in_dim = weight_matrix(self).shape
        return out_dim, in_dim

    @abstractmethod
    def adapted_weight(self) -> Tensor:
        """The effective weight, in the base layer's own shape."""

    def regularization(self) -> Tensor:
        """The method's penalty for this layer; zero for methods without one."""
        return self.weight.new_zeros(())

    def forward(self, x: Tensor) -> Tensor:
        """The rebuild runs in float32 even under autocast (mixed precision casts only the layer's
        own product): SVD factors and singular-value updates lose too much in bf16/fp16. Under activation
        checkpointing the recomputation reuses the forward pass's rebuild (methods.rebuild)."""
        weight = rebuild.rebuilt(self, self._float32_weight)
        return self.layer_forward(x, weight)

    def _float32_weight(self) -> Tensor:
        with torch.autocast(self.weight.device.type, enabled=False):
            return self.adapted_weight()

    def layer_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        """The base layer's operation with a given weight and the frozen bias."""
        if self.conv_args is None:
            return F.linear(x, weight, self.bias)
        return F.conv2d(x, weight, self.bias, **self.conv_args)

    @torch.no_grad()
    def merge(self) -> nn.Linear | nn.Conv2d:
        """A plain, frozen layer computing the same function: no per-forward rebuild at inference."""
        out_dim, in_dim = self.weight.shape[:2]
        has_bias = self.bias is not None
        if self.conv_args is None:
            layer: nn.Linear | nn.Conv2d = nn.Linear(in_dim, out_dim, bias=has_bias, device="meta")
        else:
            kernel = tuple(self.weight.shape[2:])
            layer = nn.Conv2d(in_dim, out_dim, kernel, bias=has_bias, device="meta", **self.conv_args)
        layer.weight = nn.Parameter(self.adapted_weight().detach().clone(), requires_grad=False)
        if has_bias:
            layer.bias = nn.Parameter(self.bias.detach().clone(), requires_grad=False)
        return layer

    def trainable_state(self) -> dict[str, Tensor]:
        """This layer's own trainable tensors (adapter-only checkpoints)."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}


def resolve_hparams(method: Method, spec: Mapping[str, object]) -> dict[str, object]:
    """The method's defaults overridden by spec; unknown keys are an error naming the valid ones."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"method spec must be a mapping, got {type(spec).__name__}: {spec!r}")
    name = spec.get("name", method.name)
    if name != method.name:
        raise ValueError(f"spec names method {name!r} but was given to method {method.name!r}")
    accepted = method.hparams_for(spec)
    unknown = sorted(set(spec) - {"name"} - set(accepted))
    if unknown:
        raise ValueError(
            f"method {method.name!r}: unknown spec key(s) {unknown}; "
            f"valid keys: name, {', '.join(sorted(accepted)) or '(no hparams)'}"
        )
    resolved = copy.deepcopy(accepted)
    resolved.update({key: value for key, value in spec.items() if key != "name"})
    return resolved


def component_overrides(hparams: Mapping[str, object], key: str) -> dict[str, object]:
    """A per-component override mapping (`ranks`, `sv_ranks`); keys must be chosen targets."""
    overrides = hparams[key] or {}
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{key} must map component names to values, got {overrides!r}")
    stray = sorted(set(overrides) - set(hparams["targets"]))
    if stray:
        raise ValueError(f"{key}: component(s) {stray} are not among targets {list(hparams['targets'])}")
    return dict(overrides)


_BLOCK = re.compile(r"^(?:.*?\.)?blocks\.\d+(?=\.|$)")


def block_of(module_name: str) -> str | None:
    """The encoder block a module lives in (`image_encoder.blocks.3` for
    `image_encoder.blocks.3.attn.qkv`; TinyViT's `image_encoder.layers.2.blocks.0`), else None."""
    found = _BLOCK.match(module_name)
    return found.group(0) if found else None


def encoder_blocks(model: nn.Module, components: Mapping[str, str]) -> list[str]:
    """The transformer blocks of the image encoder, in model order: every `...blocks.N` module that
    holds a module some backbone component matches. Their position in this list is the block
    index `blocks:` uses, counted through stages (TinyViT, Hiera) as one sequence; blocks no
    component reaches (TinyViT's convolutional first stage) are not counted."""
    patterns = [re.compile(pattern) for pattern in components.values()]
    blocks: dict[str, None] = {}
    for name, _ in model.named_modules():
        block = block_of(name)
        if block is not None and block not in blocks and any(p.fullmatch(name) for p in patterns):
            blocks[block] = None
    return list(blocks)


def chosen_blocks(model: nn.Module, components: Mapping[str, str], blocks: object) -> list[str] | None:
    """The blocks a `blocks:` value picks: None -> None (every block, and modules outside blocks);
    an int k -> the last k blocks (peft-sam's "late" variants); a list -> those indices.
    A wrong value is an error naming the model's block count."""
    if blocks is None:
        return None
    every = encoder_blocks(model, components)
    count = len(every)
    if isinstance(blocks, bool) or not isinstance(blocks, (int, list, tuple)):
        raise ValueError(f"blocks must be a count of last blocks or a list of block indices, got {blocks!r}")
    if isinstance(blocks, int):
        if not 1 <= blocks <= count:
            raise ValueError(f"blocks: {blocks} last blocks asked, but the model has {count} encoder blocks (1 to {count})")
        return every[count - blocks:]
    wrong = [b for b in blocks if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < count]
    if wrong or not blocks or len(set(blocks)) != len(blocks):
        raise ValueError(f"blocks: {list(blocks)} must be distinct indices in 0..{count - 1}: "
                         f"the model has {count} encoder blocks" + (f"; not valid: {wrong}" if wrong else ""))
    return [every[i] for i in sorted(blocks)]


def in_blocks(name: str, blocks: Sequence[str] | None) -> bool:
    """Whether a module or parameter name lies in one of `blocks` (None: every name, in a block or not)."""
    return blocks is None or block_of(name) in blocks


def match_targets(
    model: nn.Module, components: Mapping[str, str], targets: Sequence[str], blocks: object = None
) -> dict[str, str]:
    """Module name -> component for every module the target components select, in model order.

    Strict on purpose: a pattern that matches nothing, or matches a module that is not
    nn.Linear / nn.Conv2d, means the backbone and the config disagree, and training on would
    silently adapt less than the config says. `blocks` (see chosen_blocks) keeps only modules
    inside the chosen encoder blocks; modules outside every block (the neck) are then left out.
    """
    if isinstance(targets, str) or not isinstance(targets, Sequence) or not targets:
        raise ValueError(f"targets must be a non-empty list of component names, got {targets!r}")
    duplicates = sorted({t for t in targets if list(targets).count(t) > 1})
    if duplicates:
        raise ValueError(f"targets list component(s) {duplicates} more than once")
    modules = {name: module for name, module in model.named_modules() if name}
    matched: dict[str, str] = {}
    for component in targets:
        if component not in components:
            raise ValueError(
                f"target component {component!r} is not defined by this backbone; known components: {sorted(components)}"
            )
        try:
            pattern = re.compile(components[component])
        except re.error as err:
            raise ValueError(f"component {component!r}: invalid pattern {components[component]!r}: {err}") from err
        hits = [name for name in modules if pattern.fullmatch(name)]
        if not hits:
            raise ValueError(f"component {component!r}: pattern {pattern.pattern!r} matches no module of the model")
        for name in hits:
            if not isinstance(modules[name], SUPPORTED):
                raise ValueError(
                    f"component {component!r}: module {name!r} is {type(modules[name]).__name__}, "
                    f"not nn.Linear or nn.Conv2d (pattern {pattern.pattern!r})"
                )
            if name in matched:
                raise ValueError(f"module {name!r} is matched by both components {matched[name]!r} and {component!r}")
            matched[name] = component
    kept = chosen_blocks(model, components, blocks)
    chosen = {name: matched[name] for name in modules if name in matched and in_blocks(name, kept)}
    if not chosen:
        raise ValueError(f"targets {list(targets)} hold no module inside the chosen blocks {blocks!r}")
    return chosen


def freeze(model: nn.Module) -> None:
    """requires_grad=False on every parameter: methods start from a fully frozen model."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def replace_modules(model: nn.Module, replacements: Mapping[str, nn.Module]) -> None:
    """Swap submodules by dotted name, in place."""
    for name, module in replacements.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, module)


def adapt(
    model: nn.Module, components: Mapping[str, str], targets: Sequence[str], build: BuildFn, blocks: object = None
) -> list[str]:
    """Freeze the model and replace the targeted layers (in the chosen `blocks`) by build(name, component, module).

    Every adapted layer is built before the model is touched, so a bad rank on the last layer
    leaves the model as it was.
    """
    matched = match_targets(model, components, targets, blocks)
    layers = {name: build(name, component, model.get_submodule(name)) for name, component in matched.items()}
    for name, layer in layers.items():
        if not isinstance(layer, AdaptedLayer):
            raise TypeError(f"{name}: a method's build must return an AdaptedLayer, got {type(layer).__name__}")
        layer.component = matched[name]
    freeze(model)
    replace_modules(model, layers)
    return list(layers)
