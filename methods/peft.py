"""Any Hugging Face peft tuner as a method: `{name: peft, tuner: loha, r: 8, ...the tuner's config keys}`.

peft's own classes do the work. The targeted layers are gathered into a holder module (the same
layer objects, under new names) and peft's tuner model for that tuner injects its layers there,
as `get_peft_model` would: VeRA's random projections are shared across layers as peft shares
them, and an error (a tuner that cannot adapt a Conv2d, a bad config value) leaves the model as it
was. Each peft layer is then wrapped as an AdaptedLayer, so the engine's contract holds unchanged:
trainable-parameter accounting, adapter-only checkpoints, `merge()` through peft's own merge,
regularisers (AdaLoRA's orthogonality penalty, as peft's AdaLoraModel adds it).

Two things peft's model-level wrappers do are not done here, on purpose or by necessity:
- AdaLoRA's budget schedule (RankAllocator pruning the singular values E during training) needs
  the training loop's step hook (`update_and_allocate`); the engine has none, so every layer keeps
  `init_r` throughout, and the cell summary says so. The SVD form P diag(E) Q and its orthogonality
  penalty are peft's.
- A tuner whose layers peft cannot merge is evaluated unmerged, and the summary says so.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from benchmark.quiet import BITSANDBYTES_IMPORT, BOFT_EXTENSION, silenced
from methods.base import (
    DEFAULT_TARGETS,
    AdaptedLayer,
    Method,
    adapt,
    distinguishing_settings,
    match_targets,
    resolve_hparams,
)

with silenced(BITSANDBYTES_IMPORT):  # peft imports bitsandbytes
    from peft.config import PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.tuners.tuners_utils import BaseTunerLayer

ADAPTER = "default"
# Config fields the bridge sets itself: which modules (targets), the task, saving and inference switches.
SET_BY_BRIDGE = frozenset({
    "target_modules", "exclude_modules", "target_parameters", "layers_to_transform", "layers_pattern",
    "modules_to_save", "task_type", "peft_type", "inference_mode", "base_model_name_or_path", "revision",
    "auto_mapping", "peft_version", "megatron_config", "megatron_core", "runtime_config",
})
TESTED = ("lora", "adalora", "vera", "loha", "lokr", "ia3")
# How peft's documentation writes its tuners' names, for row names; any other tuner is upper-cased.
DISPLAY_NAMES = {
    "adalora": "AdaLoRA", "c3a": "C3A", "delora": "DeLoRA", "fourierft": "FourierFT", "gralora": "GraLoRA",
    "hira": "HiRA", "ia3": "(IA)^3", "ln_tuning": "LN Tuning", "loha": "LoHa", "lokr": "LoKr", "lora": "LoRA",
    "miss": "MiSS", "poly": "Poly", "randlora": "RandLoRA", "road": "RoAd", "shira": "SHiRA",
    "trainable_tokens": "Trainable Tokens", "vblora": "VB-LoRA", "vera": "VeRA", "waveft": "WaveFT", "xlora": "X-LoRA",
}


def tuner_names() -> list[str]:
    """peft's tuners that adapt layers (prompt-learning types excluded), lower case as configs write them."""
    return sorted(str(kind.value).lower() for kind in PEFT_TYPE_TO_TUNER_MAPPING
                  if not issubclass(PEFT_TYPE_TO_CONFIG_MAPPING[kind], PromptLearningConfig))


def _config_class(tuner: object) -> type:
    if not isinstance(tuner, str) or tuner.lower() not in tuner_names():
        raise ValueError(f"method 'peft': unknown tuner {tuner!r}; peft {_peft_version()} offers: {', '.join(tuner_names())}")
    return PEFT_TYPE_TO_CONFIG_MAPPING[tuner.upper()]


def _peft_version() -> str:
    import peft

    return peft.__version__


def config_keys(tuner: str) -> dict[str, object]:
    """The keys of `tuner`'s peft config that a spec may set, with peft's defaults."""
    fields = dataclasses.fields(_config_class(tuner))
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else None for f in fields}
    return {name: value for name, value in defaults.items() if name not in SET_BY_BRIDGE}


def row_name(entry: Mapping[str, object]) -> str:
    """The tuner's name and the settings that set the row apart: {tuner: hra, r: 4} is "HRA (peft) r4"."""
    tuner = str(entry.get("tuner", HPARAMS["tuner"])).lower()
    defaults = {**HPARAMS, **config_keys(tuner)}
    shown = distinguishing_settings({k: v for k, v in entry.items() if k != "tuner"}, defaults)
    return " ".join([f"{DISPLAY_NAMES.get(tuner, tuner.upper())} (peft)", *shown])


def accepted_hparams(spec: Mapping[str, object]) -> dict[str, object]:
    """targets, tuner and the chosen tuner's config keys; any other key is named with peft's list."""
    tuner = spec.get("tuner", HPARAMS["tuner"])
    keys = config_keys(tuner)
    unknown = sorted(set(spec) - {"name", *HPARAMS} - set(keys))
    if unknown:
        raise ValueError(f"method 'peft', tuner {tuner!r}: unknown key(s) {unknown}; peft's "
                         f"{_config_class(tuner).__name__} takes: {', '.join(sorted(keys))}")
    return {**copy.deepcopy(HPARAMS), **{key: keys[key] for key in spec if key in keys}}


class PeftLayer(AdaptedLayer):
    """One peft tuner layer (it holds the frozen base layer) behind the AdaptedLayer contract."""

    def __init__(self, tuned: BaseTunerLayer, tuner: str, layer_name: str = "") -> None:
        base = tuned.get_base_layer()
        super().__init__(base, layer_name)
        # the very tensors peft's layer holds, so the frozen weight is one parameter, counted once
        self.weight = base.weight
        self.bias = base.bias
        self.tuned = tuned
        self.tuner = tuner
        self.penalty_scale = 0.0
        self.mergeable = type(tuned).merge is not BaseTunerLayer.merge
        if tuner == "adalora":
            self.note = ("AdaLoRA without its budget schedule: RankAllocator pruning needs a per-step hook the engine "
                         "does not have, so every layer keeps init_r")
            self.regulariser = "AdaLoRA orthogonality (peft): orth_reg_weight x mean over P, Q of ||P P^T - I||_F, ||Q^T Q - I||_F"

    def forward(self, x: Tensor) -> Tensor:
        return self.tuned(x)

    def _folded(self) -> nn.Module:
        """peft's own merge, on a copy, so this layer keeps training unmerged: the plain base layer."""
        if not self.mergeable:
            raise NotImplementedError(f"{self.layer_name}: peft's {type(self.tuned).__name__} has no merge")
        with torch.no_grad():
            folded = copy.deepcopy(self.tuned)
            folded.merge(safe_merge=True, adapter_names=[ADAPTER])
        return folded.get_base_layer()

    def adapted_weight(self) -> Tensor:
        return self._folded().weight.detach()

    def merge(self) -> nn.Module:
        """peft's merged base layer, frozen; its bias too ((IA)^3 scales the bias with the output).
        A layer peft cannot merge stays as it is and is evaluated unmerged."""
        if not self.mergeable:
            return self
        plain = self._folded()
        for parameter in plain.parameters():
            parameter.requires_grad_(False)
        return plain

    def regularization(self) -> Tensor:
        """AdaLoRA: orth_reg_weight x the mean over every P (lora_A) and Q (lora_B) of the model of
        ||P P^T - I||_F and ||Q^T Q - I||_F, as AdaLoraModel.forward adds it; penalty_scale holds
        orth_reg_weight / (number of P and Q matrices), set when the model is adapted."""
        if self.tuner != "adalora":
            return super().regularization()
        p, q = self.tuned.lora_A[ADAPTER], self.tuned.lora_B[ADAPTER]
        gram_p, gram_q = p @ p.T, q.T @ q
        eye = torch.eye(gram_p.shape[0], dtype=gram_p.dtype, device=gram_p.device)
        penalty = torch.linalg.matrix_norm(gram_p - eye) + torch.linalg.matrix_norm(gram_q - eye)
        return self.penalty_scale * penalty

    def extra_repr(self) -> str:
        out_dim, in_dim = self.matrix_shape
        return f"{self.layer_name}: {out_dim}x{in_dim}, peft {type(self.tuned).__module__}.{type(self.tuned).__name__}"


HPARAMS: dict[str, object] = {"targets": list(DEFAULT_TARGETS), "blocks": None, "tuner": "lora"}


def inject(model: nn.Module, names: list[str], tuner: str, hparams: dict, loaded_in_4bit: bool = False
           ) -> tuple[dict[str, BaseTunerLayer], object]:
    """peft's tuner model for `tuner` injected into a holder of the layers `names` (the same layer
    objects under new names); the model itself is untouched. Returns {name: peft layer} and the
    tuner's config. `loaded_in_4bit` makes peft dispatch its layers for bitsandbytes 4-bit bases,
    as for a 4-bit transformers model (QLoRA)."""
    holder = nn.Module()
    holder.is_loaded_in_4bit = loaded_in_4bit
    slots = {name: f"layer{index}" for index, name in enumerate(names)}
    for name, slot in slots.items():
        holder.add_module(slot, model.get_submodule(name))
    try:
        config = _config_class(tuner)(target_modules=list(slots.values()), **hparams)
        with silenced(BOFT_EXTENSION):
            PEFT_TYPE_TO_TUNER_MAPPING[tuner.upper()](holder, config, ADAPTER)
    except (ValueError, TypeError) as error:
        raise ValueError(f"peft says: {error}") from None
    tuned = {name: holder.get_submodule(slot) for name, slot in slots.items()}
    for name, layer in tuned.items():
        if not isinstance(layer, BaseTunerLayer):
            raise ValueError(f"peft left {name} ({type(layer).__name__}) without a peft layer")
    return tuned, config


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    """Inject the tuner into a holder of the targeted layers, then swap the wrapped layers into the model."""
    hparams = resolve_hparams(METHOD, spec)
    tuner, targets, blocks = str(hparams.pop("tuner")).lower(), hparams.pop("targets"), hparams.pop("blocks")
    matched = match_targets(model, components, targets, blocks)
    try:
        tuned, config = inject(model, list(matched), tuner, hparams)
    except ValueError as error:
        raise ValueError(f"method 'peft', tuner {tuner!r} on {', '.join(targets)}: {error}") from None
    layers = {name: PeftLayer(layer, tuner, layer_name=name) for name, layer in tuned.items()}
    if tuner == "adalora":
        scale = config.orth_reg_weight / (2 * len(layers))
        for layer in layers.values():
            layer.penalty_scale = scale
    if tuner == "boft" and config.boft_n_butterfly_factor != 1 and not all(t.fbd_cuda_available for t in tuned.values()):
        for layer in layers.values():  # peft changes the factor silently (its warning is silenced as noise)
            layer.note = (f"BOFT trained with boft_n_butterfly_factor 1, not {config.boft_n_butterfly_factor}: peft's "
                          "CUDA extension (fbd_cuda) could not be built on this host, and without it peft uses 1")
    return adapt(model, components, targets, lambda name, component, module: layers[name], blocks)


METHOD = Method(
    name="peft",
    description=("Any Hugging Face peft tuner (tuner: lora, adalora, vera, loha, lokr, ia3, ...) with its own "
                 "config keys, by peft's classes; merged by peft for inference."),
    hparams=HPARAMS,
    apply=apply,
    open_hparams=accepted_hparams,
    row_name=row_name,
)
