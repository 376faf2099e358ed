"""The SALT paper's testable claims, as data: what it says, where, which rows and datasets it
concerns, and which check (benchmark.report.claims) decides it on a grid's results with which
thresholds. Like published.py, nothing here reads results."""
from __future__ import annotations

from dataclasses import dataclass, field

ALPHA = 0.05  # significance level of the paired tests
MIN_PAIRS = 6  # fewer non-zero paired differences cannot reach p < 0.05 in the exact signed-rank test


@dataclass(frozen=True)
class Claim:
    """One claim. `check` names the function that decides it; `params` are its thresholds;
    `backbones` the backbone families whose rows it concerns ("sam": SAM ViT, "sam2", "any")."""

    id: str
    text: str
    source: str
    check: str
    params: dict = field(default_factory=dict)
    backbones: str = "sam"


CLAIMS: tuple[Claim, ...] = (
    Claim("salt_beats_lora", "SALT outperforms LoRA by 2% to 5% in Dice (at the same rank)",
          "abstract; section 1; Table 1", "beats",
          {"winner": "salt", "loser": "lora", "same_rank": True, "points": (2.0, 5.0)}),
    Claim("salt_beats_ssam", "SALT outperforms S-SAM (SVD) by 2% to 5% in Dice",
          "abstract; section 1; Table 1", "beats",
          {"winner": "salt", "loser": "svd", "same_rank": False, "points": (2.0, 5.0)}),
    Claim("salt_lowest_hd95", "SALT achieves the lowest average HD95 of the PEFT methods (23.87 against "
          "LoRA's 25.94 and S-SAM's 30.12)", "section 4.1; Table 1", "lowest_hd95", {"row": "salt"}),
    Claim("salt_r256_share", "SALT at rank 256 trains 3.9% of the parameters (9.4M)", "abstract; section 4.1; Table 1",
          "share", {"method": "salt", "rank": 256, "percent": 3.9, "tolerance": 0.4}),
    Claim("lora_r256_share", "LoRA at rank 256 trains 14% of the parameters (33.9M)", "section 4.1; Table 1",
          "share", {"method": "lora", "rank": 256, "percent": 14.08, "tolerance": 1.4}),
    Claim("lora_gflops_linear", "LoRA's added GFLOPs grow roughly linearly with rank (1.24 at rank 4, 79.2 at "
          "rank 256, a x64 jump matching the rank)", "section 4.1", "linear_in_rank",
          {"method": "lora", "ratio_tolerance": 0.15, "r2": 0.99}),
    Claim("salt_gflops_flat", "SALT's added GFLOPs are nearly rank-independent (22.88 at rank 4, 23.52 at rank 256)",
          "section 4.1", "flat_in_rank", {"method": "salt", "max_ratio": 1.1, "contradicts_above": 1.5}),
    Claim("low_resource", "LoRA degrades on smaller datasets while SALT stays stable across dataset sizes "
          "(robust adaptation in low-resource settings)", "abstract; section 4.1", "low_resource",
          {"stable_points": 5.0, "margin_points": 2.0}, backbones="any"),
    Claim("sam2_lora_beats_svd", "On SAM2, LoRA consistently outperforms SVD (S-SAM)", "section 4.3; Fig. 4b", "beats",
          {"winner": "lora", "loser": "svd", "same_rank": False, "points": (0.0, None)}, backbones="sam2"),
    Claim("sam2_salt_close_to_lora", "On SAM2, SALT is competitive with LoRA at rank 256 (Dice within about 0.002) "
          "with 2.4x fewer trainable parameters", "section 4.3; Fig. 4b", "close_with_fewer",
          {"rank": 256, "points": 1.0, "ratio": 2.4, "ratio_tolerance": 0.3}, backbones="sam2"),
)
