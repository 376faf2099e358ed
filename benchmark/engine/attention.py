"""`train.attention`: segment-anything's SAM ViT attention through fused scaled-dot-product attention.

segment-anything computes softmax(q k^T * scale + rel_pos_bias) v explicitly, which stores the full
attention map of every head for the backward pass (global blocks at 512 px: 1024 x 1024 per head).
`torch.nn.functional.scaled_dot_product_attention` computes the same function with the decomposed
relative-position bias passed as its additive mask. The mask is still built at the map's full size
(B x heads x HW x HW), so what the fused kernels save is the softmax's intermediate copies, more
under bf16 (eager softmax runs in fp32) than in fp32: `saltbench bench` measures it. The
swap replaces only the attention arithmetic: the qkv and proj nn.Linear modules (and the rel_pos
tables) stay the same objects under the same names, so every PEFT method adapts exactly the layers
it adapted before. Windowed and global blocks use the same Attention class, so both are covered.

Not bit-exact: the fused kernels sum in another order (about 1e-6 relative in fp32), which is why
`eager` stays the default and `sdpa` enters a cell's fingerprint (benchmark.grid). SAM2's Hiera
already calls scaled_dot_product_attention (sam2.modeling.backbones.hieradet), and LiteMedSAM's
TinyViT keeps its own attention (a learned bias table, not converted here): on those backbones the
setting changes nothing, and `applied` says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

MODES = ("eager", "sdpa")


def rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The decomposed relative-position term segment-anything adds to the scores
    (add_decomposed_rel_pos), as a (B*heads, HW, HW) additive mask."""
    h, w = size
    rh, rw = get_rel_pos(h, h, rel_pos_h), get_rel_pos(w, w, rel_pos_w)
    r_q = q.reshape(q.shape[0], h, w, -1)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
    return (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(q.shape[0], h * w, h * w)


class SDPAAttention(Attention):
    """segment-anything's Attention with the score, bias, softmax and value product fused."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(batch, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, HW, head_dim)
        mask = None
        if self.use_rel_pos:
            flat_q = q.reshape(batch * self.num_heads, h * w, -1)
            mask = rel_pos_bias(flat_q, self.rel_pos_h, self.rel_pos_w, (h, w)).view(batch, self.num_heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype) if mask is not None else None,
                                             scale=self.scale)
        return self.proj(out.view(batch, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(batch, h, w, -1))


def set_attention(model: nn.Module, mode: str) -> int:
    """Switch every segment-anything Attention module of `model` to `mode`, in place (the class
    only: parameters and submodules are untouched); the number of modules switched (0: the
    model has none, as SAM2 and LiteMedSAM)."""
    if mode not in MODES:
        raise ValueError(f"train.attention must be one of {', '.join(MODES)}, got {mode!r}")
    target = SDPAAttention if mode == "sdpa" else Attention
    count = 0
    for module in model.modules():
        if isinstance(module, Attention):
            module.__class__ = target
            count += 1
    return count
