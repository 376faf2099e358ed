"""Published numbers as data: Table 1's baseline rows and the ablation points as printed, and the
checks of a grid's `paper` section (a mapped row must name a published row that exists)."""
from __future__ import annotations

import re

import pytest

from benchmark.errors import ConfigError, UnknownNameError
from benchmark.paper.published import ROWS, lookup, published
from tests.test_report_fixtures import make_grid


def test_baseline_rows_as_printed():
    unet = lookup("table1/unet")
    assert (unet.label, unet.printed_m, unet.printed_pct, unet.model) == ("U-Net", "6.5", "100", "unet")
    assert unet.dice == {"ARCADE": 0.36, "XRay-Angio": 0.71, "DIAS": 0.13, "ROSE": 0.63, "DRIVE": 0.18, "Average": 0.40}
    assert unet.hd95["DIAS"] == 262.66
    segformer = published("table1", "segformer")
    assert (segformer.printed_m, segformer.dice["DIAS"], segformer.hd95["Average"]) == ("43", 0.57, 50.47)
    counts = {row.row: row.printed_m for row in ROWS if row.table == "table1" and row.printed_pct == "100"}
    assert counts == {"unet": "6.5", "unetr": "91", "regunet": "7.8", "segnet": "29", "deeplabv3plus": "45",
                      "segformer": "43"}


def test_ablation_points_quote_their_sentence():
    points = {row.row: row for row in ROWS if row.table == "ablation"}
    assert {k: (p.rank, p.printed_pct, p.dice["DRIVE"]) for k, p in points.items()} == {
        "salt_lora_r4": (4, "0.46", 0.72),
        "salt_lora_r256": (256, "5.86", 0.76),
        "salt_lora_r256_sv700": (256, None, 0.75),
        "salt_lora_r256_sv200": (256, "5.84", 0.76),
    }
    assert "from 0.46% to 5.86%" in points["salt_lora_r4"].source
    assert "from 700 to 200" in points["salt_lora_r256_sv700"].source
    assert "5.84% of trainable parameters" in points["salt_lora_r256_sv200"].source
    assert points["salt_lora_r256_sv200"].title == "LoRA 256 / MHA 200 / MLP 200"
    assert lookup("table1/salt_r4").title == "SALT 4"


def test_row_refs_are_unique():
    refs = [row.ref for row in ROWS]
    assert len(refs) == len(set(refs))


@pytest.mark.parametrize("ref", ["table1/nope", "ablation", "sam3/svd"])
def test_unknown_ref_lists_known_rows(ref):
    with pytest.raises(UnknownNameError, match=r"known rows: table1/unet, .*ablation/salt_lora_r256_sv200"):
        lookup(ref)
    with pytest.raises(KeyError):  # what benchmark.cost.paper_params catches
        lookup(ref)


def test_paper_section_accepts_good_mapping(tmp_path):
    rows = {"unet": "table1/unet", "litemedsam/salt_r256": "ablation/salt_lora_r256_sv200"}
    config = make_grid(tmp_path, paper={"datasets": {"bright": "DRIVE"}, "rows": rows})
    assert lookup(config["paper"]["rows"]["litemedsam/salt_r256"]).dice == {"DRIVE": 0.76}


def test_mapped_row_to_missing_published_row_fails_clearly(tmp_path):
    """Config validation looks the row up here; its message lists every known row."""
    with pytest.raises(ConfigError, match=re.escape("no published row table1/salt_r8; known rows: table1/unet, ")):
        make_grid(tmp_path, paper={"rows": {"litemedsam/salt_r4": "table1/salt_r8"}})
