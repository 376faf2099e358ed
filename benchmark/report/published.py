"""The SALT paper's published numbers for SAM-based models, as data (BMVC 2025 text in
shared/reference): Table 1's SAM-based rows and the SAM2 table of Fig. 4b.

Values are copied as printed, including their rounding: trainable counts (millions) and
percentages are kept as the printed text, because the number of printed digits says how precise
they are ("1M" for S-SAM is +-0.5M, "1.5M" is +-0.05M); Dice to 2 (Table 1) or 3 (SAM2) decimals.
None marks a cell the paper leaves as a dash. Comparisons (parameter accounting, reproduced vs
published Dice/HD95) join on (table, row).
"""
from __future__ import annotations

from dataclasses import dataclass

TABLE1_DATASETS = ("ARCADE", "XRay-Angio", "DIAS", "ROSE", "DRIVE")
SAM2_DATASETS = ("ARCADE", "ROSE")
# The parameter totals printed in the group headers: "SAM-Based PEFT Methods (241 M)" and
# "SAM2-Based Methods (125M)".
GROUP_TOTAL_M = {"table1": 241.0, "sam2": 125.0}


def half_unit(printed: str) -> float:
    """Half a unit of the last printed digit: how far the true value may lie from the printed one."""
    decimals = len(printed.partition(".")[2])
    return 0.5 * 10.0 ** -decimals


@dataclass(frozen=True)
class PublishedRow:
    """One row. printed_m / printed_pct: the trainable count (millions) and percentage as printed
    (None where the paper prints a dash). dice / hd95: per dataset, in the table's dataset order,
    plus "Average" for Table 1."""

    table: str
    row: str
    label: str
    rank: int | None
    printed_m: str | None
    printed_pct: str | None
    dice: dict[str, float]
    hd95: dict[str, float | None]

    @property
    def trainable_m(self) -> float | None:
        return None if self.printed_m is None else float(self.printed_m)

    @property
    def trainable_pct(self) -> float | None:
        return None if self.printed_pct is None else float(self.printed_pct)


def _table1(row: str, label: str, rank: int | None, m: str | None, pct: str | None, values: list) -> PublishedRow:
    names = (*TABLE1_DATASETS, "Average")
    return PublishedRow("table1", row, label, rank, m, pct,
                        dict(zip(names, values[0::2])), dict(zip(names, values[1::2])))


def _sam2(row: str, label: str, rank: int | None, m: str, values: list) -> PublishedRow:
    return PublishedRow("sam2", row, label, rank, m, None,
                        dict(zip(SAM2_DATASETS, values[0::2])), dict(zip(SAM2_DATASETS, values[1::2])))


ROWS: tuple[PublishedRow, ...] = (
    _table1("sam_zero_shot", "SAM w/ prompts", None, None, None,
            [0.00, None, 0.04, None, 0.00, None, 0.00, None, 0.00, None, 0.01, None]),
    _table1("medsam_zero_shot", "MedSAM", None, None, None,
            [0.18, 115.18, 0.13, 80.05, 0.29, 168.82, 0.32, 131.89, 0.21, 153.23, 0.23, 129.83]),
    _table1("svd", "S-SAM", None, "1", "0.40",
            [0.76, 52.44, 0.75, 27.56, 0.67, 42.36, 0.65, 12.41, 0.70, 15.81, 0.71, 30.12]),
    _table1("lora_r4", "LoRA", 4, "1.5", "0.64",
            [0.78, 39.58, 0.73, 26.78, 0.61, 27.81, 0.59, 16.26, 0.62, 21.04, 0.66, 26.29]),
    _table1("lora_r256", "LoRA", 256, "33.9", "14.08",
            [0.81, 36.89, 0.76, 24.84, 0.63, 34.36, 0.62, 14.62, 0.68, 19.00, 0.70, 25.94]),
    _table1("salt_r4", "SALT", 4, "1.1", "0.46",
            [0.78, 51.74, 0.75, 29.55, 0.69, 39.58, 0.66, 12.19, 0.72, 16.04, 0.72, 29.82]),
    _table1("salt_r256", "SALT", 256, "9.4", "3.9",
            [0.81, 42.50, 0.77, 23.67, 0.71, 27.35, 0.67, 12.64, 0.75, 13.20, 0.74, 23.87]),
    _sam2("svd", "SVD", None, "0.2", [0.784, 57.13, 0.663, 13.54]),
    _sam2("lora_r4", "LoRA", 4, "0.9", [0.815, 49.38, 0.676, 11.73]),
    _sam2("lora_r256", "LoRA", 256, "44.6", [0.824, 46.08, 0.679, 12.32]),
    _sam2("salt_r4", "SALT", 4, "0.5", [0.804, 53.54, 0.672, 12.43]),
    _sam2("salt_r256", "SALT", 256, "19.7", [0.822, 47.66, 0.677, 11.63]),
)


def published(table: str, row: str) -> PublishedRow:
    for candidate in ROWS:
        if candidate.table == table and candidate.row == row:
            return candidate
    known = ", ".join(f"{r.table}/{r.row}" for r in ROWS)
    raise KeyError(f"no published row {table}/{row}; known: {known}")
