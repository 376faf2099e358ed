"""MiLoRA (Wang et al., NAACL 2025, "MiLoRA: Harnessing Minor Singular Components for
Parameter-Efficient LLM Finetuning"): LoRA whose factors start as W's *minor* singular part.

W = U S V^T with the singular values in descending order; the last `rank` triplets form
W_m = U_m S_m V_m^T (their eq. 3). MiLoRA initialises A = sqrt(S_m) V_m^T and B = U_m sqrt(S_m) and
freezes the principal part W_p = W - W_m, so the principal directions, which hold the pretrained
knowledge, are left alone and the update starts in the least-used subspace. With saltbench's LoRA
scaling s = lora_alpha / rank this is B0 = U_m sqrt(S_m / s), A0 = sqrt(S_m / s) V_m^T and

    W' = (W - s B0 A0) + s B A = W + s (B A - B0 A0)

which PiSSA's layer computes for any chosen singular part; only the part differs (the smallest
`rank` values instead of the largest). W' == W at the start; rank * (in*kh*kw + out) parameters.
"""
from __future__ import annotations

from methods.base import Method
from methods.lora import HPARAMS as LORA_HPARAMS
from methods.lora import low_rank_apply
from methods.pissa import PiSSALayer


class MiLoRALayer(PiSSALayer):
    """LoRA initialised on the `rank` smallest singular triplets, trained on the frozen principal part."""

    @staticmethod
    def singular_part(r_max: int, rank: int) -> slice:
        return slice(r_max - rank, r_max)


METHOD = Method(
    name="milora",
    label="MiLoRA",
    description="MiLoRA: LoRA whose factors start as the minor (smallest) singular part of W, on the frozen principal part.",
    hparams=dict(LORA_HPARAMS),
    apply=low_rank_apply(lambda: METHOD, MiLoRALayer),
)
