"""scripts/gpu_check.sh (`make gpu-check`) on the CPU in its --quick form, so that the script a GPU
machine runs cannot rot: every part (device, bench, smoke cell, plan) runs and lands in one report."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_quick_on_the_cpu_and_writes_one_report(tmp_path):
    report = tmp_path / "gpu_check.md"
    result = subprocess.run([str(REPO / "scripts" / "gpu_check.sh"), "--device", "cpu", "--quick", "--out", str(report)],
                            cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + (
        report.read_text() if report.exists() else "")
    text = report.read_text()
    for heading in ("## Device", "## saltbench bench: SAM ViT-B at 512", "## paper_smoke cells on cpu",
                    "## saltbench plan"):
        assert heading in text, heading
    assert "| sam_vit_b @512 b2 | lora_r4 | fp32 | eager |" in text and "| sdpa+checkpointing |" in text
    assert "sam_vit_b-lora_r4-" in text and "blocks checkpointed" in text, "the smoke cell's summary row"
    assert "Grid: " in text and "FAILED" not in text and text.rstrip().endswith("s.")
