"""The paper's claims checked on a grid's results: figures/claims.{md,csv}, one line per claim with
its verdict (supported, contradicted, inconclusive, not tested), the statistic that decided, the
numbers behind it, and what the grid would need to decide a claim it could not.

Each check is a pure function of the table cells' summaries, per-image Dice and cost files, and
reads only what the claim is about: Dice and HD95 for the performance claims, trainable counts and
GFLOPs for the cost claims, Dice across training-set sizes for the low-resource claim. The note
states the grid's conditions, so that a verdict on synthetic data or a stand-in backbone is never
read as a verdict on the paper's experiments."""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.grid import tuned_param
from benchmark.io import write_text
from benchmark.paper.claims import ALPHA, CLAIMS, MIN_PAIRS, Claim
from benchmark.report import markdown
from benchmark.report.rows import by_row, csv_text, distinct, prompted, row_label
from benchmark.report.stats import wilcoxon_paired
from benchmark.report.table1_stats import read_per_image

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested"
COLUMNS = ("claim", "source", "verdict", "statistic", "numbers", "needs", "text")
WIDTH = 120  # claims.md reads in a terminal


@dataclass(frozen=True)
class Verdict:
    verdict: str
    statistic: str = ""
    numbers: str = ""
    needs: str = ""


@dataclass(frozen=True)
class Row:
    """A table row of the grid: its cells (all datasets and seeds), method name, rank and family."""

    key: str
    label: str
    cells: list[dict]

    @property
    def method(self) -> str:
        return self.cells[0]["method"]["name"]

    @property
    def rank(self) -> int | None:
        return self.cells[0]["method"].get("rank")

    @property
    def family(self) -> str:
        architecture = self.cells[0]["architecture"]
        return "sam2" if architecture.startswith("sam2") else "sam"

    @property
    def full_cells(self) -> list[dict]:
        """The cells on whole training sets (not on a training subset)."""
        return [c for c in self.cells if c["dataset"].get("n_train_subset") is None]


def grid_rows(summaries: list[dict]) -> list[Row]:
    """The text-prompted PEFT rows: the paper's claims are about rows prompted as it prompts them,
    and a box- or point-prompted row (an oracle one above all) is no evidence for or against them."""
    several = len({s["backbone"] for s in summaries if s["method"]["group"] == "peft"}) > 1
    return [Row(key, row_label(cells[0], several), cells) for key, cells in by_row(summaries).items()
            if cells[0]["method"]["group"] == "peft" and not prompted(cells[0])]


def _family(rows: list[Row], claim: Claim) -> list[Row]:
    return rows if claim.backbones == "any" else [r for r in rows if r.family == claim.backbones]


def _pairs(rows: list[Row], winner: str, loser: str, same_rank: bool) -> list[tuple[Row, Row]]:
    """(winner row, loser row) pairs on one backbone: same rank where the claim compares ranks."""
    pairs = []
    for a in (r for r in rows if r.method == winner):
        for b in (r for r in rows if r.method == loser and r.cells[0]["backbone"] == a.cells[0]["backbone"]):
            if not same_rank or a.rank == b.rank:
                pairs.append((a, b))
    return pairs


def _image_dice(row: Row, cells_dir: Path) -> dict[tuple[str, str], float]:
    """Per (dataset column, image) Dice, the mean over seeds, on whole training sets."""
    values: dict[tuple[str, str], list[float]] = {}
    for cell in row.full_cells:
        frame = read_per_image(cells_dir, cell["cell"])
        for image, dice in zip(frame["id"], frame["dice"]):
            values.setdefault((cell["dataset"]["name"], str(image)), []).append(float(dice))
    return {key: float(np.mean(v)) for key, v in values.items()}


def _beats_pair(a: Row, b: Row, cells_dir: Path, points: tuple[float, float | None]) -> tuple[str, str, str]:
    """(verdict, statistic, numbers) for "a beats b by points[0] to points[1] Dice points"."""
    dice_a, dice_b = _image_dice(a, cells_dir), _image_dice(b, cells_dir)
    shared = sorted(set(dice_a) & set(dice_b))
    paired = wilcoxon_paired([dice_a[k] for k in shared], [dice_b[k] for k in shared])
    datasets = sorted({k[0] for k in shared})
    gap = 100 * float(np.mean([np.mean([dice_a[k] - dice_b[k] for k in shared if k[0] == d]) for d in datasets]))
    numbers = f"{a.label} vs {b.label}: {gap:+.1f} Dice points (mean over {len(datasets)} dataset(s)), " \
              f"{len(shared)} paired images, p = {paired.p:.3g}"
    statistic = "Wilcoxon signed-rank test on per-image Dice (mean over seeds); effect = mean Dice difference"
    low, high = points
    if paired.n_nonzero < MIN_PAIRS:
        return INCONCLUSIVE, statistic, numbers + f" (only {paired.n_nonzero} non-zero differences)"
    if math.isnan(paired.p) or paired.p >= ALPHA:
        return INCONCLUSIVE, statistic, numbers
    if gap <= 0:
        return CONTRADICTED, statistic, numbers
    if gap < low:
        return CONTRADICTED, statistic, numbers + f" (better, but by less than the claimed {low:g})"
    suffix = f" (more than the claimed {high:g})" if high is not None and gap > high else ""
    return SUPPORTED, statistic, numbers + suffix


def _combine(results: list[tuple[str, str, str]]) -> Verdict:
    """One verdict over several comparisons: contradicted if any is, supported if all are."""
    verdicts = [r[0] for r in results]
    verdict = CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if set(verdicts) == {SUPPORTED} else INCONCLUSIVE
    needs = "more test images or seeds (p at or above 0.05, or fewer than 6 paired differences)" \
        if verdict == INCONCLUSIVE else ""
    return Verdict(verdict, results[0][1], "; ".join(r[2] for r in results), needs)


def check_beats(claim: Claim, rows: list[Row], cells_dir: Path) -> Verdict:
    p = claim.params
    pairs = _pairs(_family(rows, claim), p["winner"], p["loser"], p["same_rank"])
    if not pairs:
        return Verdict(NOT_TESTED, needs=f"a {p['winner']} row and a {p['loser']} row on a "
                       f"{'SAM2' if claim.backbones == 'sam2' else 'SAM-family (non-SAM2)'} backbone"
                       + (" at the same rank" if p["same_rank"] else ""))
    return _combine([_beats_pair(a, b, cells_dir, p["points"]) for a, b in pairs])


def _mean_hd95(row: Row) -> float:
    """The row's mean HD95 over dataset columns (each the mean over seeds), defined values only."""
    by_dataset: dict[str, list[float]] = {}
    for cell in row.full_cells:
        value = cell["metrics"]["hd95_mean"]
        if value is not None and not math.isnan(value):
            by_dataset.setdefault(cell["dataset"]["name"], []).append(value)
    return float(np.mean([np.mean(v) for v in by_dataset.values()])) if by_dataset else math.nan


def check_lowest_hd95(claim: Claim, rows: list[Row], cells_dir: Path) -> Verdict:
    rows = _family(rows, claim)
    salt = [r for r in rows if r.method == claim.params["row"]]
    others = [r for r in rows if r.method != claim.params["row"]]
    if not salt or not others:
        return Verdict(NOT_TESTED, needs="a SALT row and another PEFT row on a SAM-family (non-SAM2) backbone")
    means = {r.label: _mean_hd95(r) for r in rows}
    numbers = ", ".join(f"{label} {value:.2f}" for label, value in sorted(means.items(), key=lambda kv: kv[1]))
    if any(math.isnan(v) for v in means.values()):
        return Verdict(INCONCLUSIVE, "mean HD95 over datasets", numbers, "HD95 defined on every row (no empty masks)")
    best = min(means, key=means.get)
    verdict = SUPPORTED if best in {r.label for r in salt} else CONTRADICTED
    return Verdict(verdict, "mean HD95 over datasets (lowest wins; no test)", numbers)


def check_share(claim: Claim, rows: list[Row], cells_dir: Path) -> Verdict:
    p = claim.params
    found = [r for r in rows if r.method == p["method"] and r.rank == p["rank"]]
    sam_b = [r for r in found if r.cells[0]["architecture"] == "sam_vit_b"]
    if not sam_b:
        where = f" (this grid has it on {', '.join(sorted({r.cells[0]['architecture'] for r in found}))}: " \
                "a share of another model's parameters)" if found else ""
        return Verdict(NOT_TESTED, needs=f"a {p['method']} rank-{p['rank']} row on SAM ViT-B{where}")
    params = sam_b[0].cells[0]["params"]
    share = params.get("trainable_pct_with_text_encoder") or params["trainable_pct"]
    delta = share - p["percent"]
    verdict = SUPPORTED if abs(delta) <= p["tolerance"] else CONTRADICTED
    return Verdict(verdict, f"trainable share against the claimed {p['percent']}% (tolerance ±{p['tolerance']} points)",
                   f"{sam_b[0].label}: {share:.2f}% ({params['trainable']:,} trainable; denominator with the text "
                   f"encoder where the backbone has one), Δ {delta:+.2f} points")


def _added_gflops(rows: list[Row], method: str, cells_dir: Path) -> dict[str, dict[int, float]]:
    """Per backbone: rank -> added GFLOPs per image of a training step (cost.json)."""
    found: dict[str, dict[int, float]] = {}
    for row in rows:
        if row.method != method or row.rank is None:
            continue
        cost = json.loads((cells_dir / row.cells[0]["cell"] / "cost.json").read_text())
        if cost.get("training"):
            found.setdefault(row.cells[0]["backbone"], {})[int(row.rank)] = cost["training"]["gflops_added_per_image"]
    return {backbone: ranks for backbone, ranks in found.items() if len(ranks) >= 2}


def _per_backbone(claim: Claim, rows: list[Row], cells_dir: Path, judge) -> Verdict:
    """A GFLOPs claim judged on each backbone's series of ranks (judge: backbone, {rank: GFLOPs} ->
    (verdict, statistic, numbers)); not tested without two ranks of the method on one backbone."""
    series = _added_gflops(rows, claim.params["method"], cells_dir)
    if not series:
        return Verdict(NOT_TESTED, needs=f"{claim.params['method']} rows at two or more ranks on one backbone")
    return _combine([judge(backbone, ranks) for backbone, ranks in series.items()])


def check_linear_in_rank(claim: Claim, rows: list[Row], cells_dir: Path) -> Verdict:
    p = claim.params

    def judge(backbone: str, ranks: dict[int, float]) -> tuple[str, str, str]:
        r, g = np.array(sorted(ranks), dtype=float), np.array([ranks[k] for k in sorted(ranks)])
        numbers = f"{backbone}: " + ", ".join(f"r{int(k)} {v:.3g}" for k, v in zip(r, g))
        if len(r) == 2:  # two ranks: proportional growth, as the paper's own x64 argument
            ratio = (g[1] / g[0]) / (r[1] / r[0])
            verdict = SUPPORTED if abs(ratio - 1) <= p["ratio_tolerance"] else CONTRADICTED
            return (verdict, f"growth ratio over rank ratio (1 = linear; tolerance ±{p['ratio_tolerance']})",
                    numbers + f"; ratio {ratio:.3f}")
        slope, intercept = np.polyfit(r, g, 1)
        r2 = 1 - np.sum((g - (slope * r + intercept)) ** 2) / np.sum((g - g.mean()) ** 2)
        return (SUPPORTED if r2 >= p["r2"] else CONTRADICTED, f"least-squares line through the ranks, R^2 >= {p['r2']}",
                numbers + f"; slope {slope:.4g} GFLOPs per rank, R^2 {r2:.4f}")

    return _per_backbone(claim, rows, cells_dir, judge)


def check_flat_in_rank(claim: Claim, rows: list[Row], cells_dir: Path) -> Verdict:
    p = claim.params

    def judge(backbone: str, ranks: dict[int, float]) -> tuple[str, str, str]:
        low, high = min(ranks), max(ranks)
        ratio = ranks[high] / ranks[low]
        verdict = SUPPORTED if ratio <= p["max_ratio"] else CONTRADICTED if ratio >= p["contradicts_above"] else INCONCLUSIVE
        return (verdict, f"added GFLOPs at the highest over the lowest rank (supported <= {p['max_ratio']}, "
                         f"contradicted >= {p['contradicts_above']})",
                f"{backbone}: r{low} {ranks[low]:.3g}, r{high} {ranks[high]:.3g}, ratio {ratio:.3f}")

    return _per_backbone(claim, rows, cells_dir, judge)


def _dice_by_size(row: Row) -> dict[str, dict[int | None, float]]:
    """Per dataset: training-subset size (None: all) -> mean Dice over seeds."""
    values: dict[str, dict[int | None, list[float]]] = {}
    for cell in row.cells:
        size = cell["dataset"].get("n_train_subset")
        base = cell["dataset"]["name"] if size is None else cell["dataset"]["name"].removesuffix(f"_n{size}")
        values.setdefault(base, {}).setdefault(size, []).append(cell["metrics"]["dice_mean"])
    return {d: {s: float(np.mean(v)) for s, v in sizes.items()} for d, sizes in values.items()}


def check_low_resource(claim: Claim, rows: list[Row], cells_dir: Path) -> Verdict:
    p = claim.params
    results = []
    for salt in (r for r in rows if r.method == "salt"):
        for lora in (r for r in rows if r.method == "lora" and r.rank == salt.rank
                     and r.cells[0]["backbone"] == salt.cells[0]["backbone"]):
            salt_sizes, lora_sizes = _dice_by_size(salt), _dice_by_size(lora)
            for dataset, sizes in salt_sizes.items():
                subsets = sorted(s for s in sizes if s is not None and s in lora_sizes.get(dataset, {}))
                if not subsets or None not in sizes or None not in lora_sizes.get(dataset, {}):
                    continue
                small = subsets[0]
                drop_salt = 100 * (sizes[None] - sizes[small])
                drop_lora = 100 * (lora_sizes[dataset][None] - lora_sizes[dataset][small])
                numbers = (f"{dataset}, all training images -> {small}: {salt.label} drops {drop_salt:+.1f} Dice points, "
                           f"{lora.label} {drop_lora:+.1f}")
                if drop_salt > p["stable_points"] or drop_salt > drop_lora:
                    verdict = CONTRADICTED
                elif drop_lora - drop_salt >= p["margin_points"]:
                    verdict = SUPPORTED
                else:
                    verdict = INCONCLUSIVE
                results.append((verdict, f"Dice drop from the whole training set to the smallest subset (SALT stable: "
                                         f"<= {p['stable_points']:g} points; LoRA degrades: drops >= "
                                         f"{p['margin_points']:g} points more)", numbers))
    if not results:
        return Verdict(NOT_TESTED, needs="SALT and LoRA rows at one rank on a dataset with train_subsets "
                                         "(e.g. train_subsets: [4, 8]), so that Dice can be read across training-set sizes")
    verdict = _combine(results)
    needs = "more seeds: a single seed's drop is not a trend" if verdict.verdict == INCONCLUSIVE else ""
    return Verdict(verdict.verdict, verdict.statistic, verdict.numbers, needs)


def check_close_with_fewer(claim: Claim, rows: list[Row], cells_dir: Path) -> Verdict:
    p = claim.params
    rows = _family(rows, claim)
    salt = [r for r in rows if r.method == "salt" and r.rank == p["rank"]]
    lora = [r for r in rows if r.method == "lora" and r.rank == p["rank"]]
    if not salt or not lora:
        return Verdict(NOT_TESTED, needs=f"SALT and LoRA rank-{p['rank']} rows on a SAM2 backbone")
    a, b = salt[0], lora[0]
    dice = {row.label: float(np.mean([c["metrics"]["dice_mean"] for c in row.full_cells])) for row in (a, b)}
    gap = 100 * (dice[a.label] - dice[b.label])
    ratio = b.cells[0]["params"]["trainable"] / max(a.cells[0]["params"]["trainable"], 1)
    numbers = f"{a.label} {dice[a.label]:.3f} vs {b.label} {dice[b.label]:.3f} ({gap:+.1f} points); parameters " \
              f"LoRA / SALT = {ratio:.2f}"
    fewer = abs(ratio - p["ratio"]) <= p["ratio_tolerance"]
    verdict = SUPPORTED if gap >= -p["points"] and fewer else CONTRADICTED
    return Verdict(verdict, f"mean Dice gap (close: within {p['points']:g} points) and the parameter ratio "
                            f"({p['ratio']} ± {p['ratio_tolerance']})", numbers)


CHECKS = {"beats": check_beats, "lowest_hd95": check_lowest_hd95, "share": check_share,
          "linear_in_rank": check_linear_in_rank, "flat_in_rank": check_flat_in_rank,
          "low_resource": check_low_resource, "close_with_fewer": check_close_with_fewer}


def check_claims(summaries: list[dict], cells_dir: Path) -> list[dict]:
    """One record per claim, in the order of benchmark.paper.claims."""
    rows = grid_rows(summaries)
    return [{"claim": claim.id, "source": claim.source, "text": claim.text,
             **vars(CHECKS[claim.check](claim, rows, Path(cells_dir)))} for claim in CLAIMS]


def conditions(config: dict, summaries: list[dict]) -> str:
    """What the verdicts were measured under, and why they are not verdicts on the paper when so."""
    train = config["train"]
    caveats = []
    if any(config["datasets"][s]["kind"] == "synthetic" for s in config["datasets"]):
        caveats.append("synthetic data")
    architectures = {s["architecture"] for s in summaries if s["method"]["group"] == "peft"}
    if architectures - {"sam_vit_b"} - {a for a in architectures if a.startswith("sam2_hiera_b")}:
        caveats.append("stand-in backbones (" + ", ".join(sorted(architectures)) + ")")
    if any("random" in s["weights"] for s in summaries):
        caveats.append("random weights on some rows")
    if train["epochs"] < 200:
        caveats.append(f"{train['epochs']} epochs (paper: 200)")
    if len(config["seeds"]) == 1:
        caveats.append("one seed")
    param = tuned_param(config)
    tuning = f"{param} tuned per row on validation over {config['tune'][param]}" if param else f"one lr ({train['lr']}) for every row"
    text = (f"Grid `{config.get('name', 'grid')}`: seeds {config['seeds']}, {train['epochs']} epochs, batch "
            f"{train['batch_size']}, {tuning}, input {config['input_size']} px. Weights: "
            f"{distinct([s['weights'] for s in summaries])}. Data: {distinct([s['dataset']['data'] for s in summaries])}.")
    other_prompts = {s["method"]["id"] for s in summaries if s["method"]["group"] == "peft" and prompted(s)}
    if other_prompts:
        text += (f" Rows prompted otherwise than by text ({', '.join(sorted(other_prompts))}) are left out of every "
                 "claim: the paper's claims are about its text-prompted rows.")
    if caveats:
        text += (" These verdicts are about this grid, not about the paper's experiments: " + "; ".join(caveats)
                 + ". A claim supported or contradicted here says how the method behaves under these conditions.")
    return text


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False) or [""]


def claims_markdown(config: dict, summaries: list[dict], records: list[dict]) -> str:
    """claims.md: the conditions, a verdict table, then each claim with its numbers (120 columns)."""
    counts = {v: sum(r["verdict"] == v for r in records) for v in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED)}
    lines = ["# The paper's claims, checked on this grid", "", *_wrapped(conditions(config, summaries)), "",
             *_wrapped("Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + f". Significance level "
                       f"{ALPHA}; paired tests need at least {MIN_PAIRS} non-zero differences."), ""]
    lines += markdown.table(["#", "Claim", "Verdict", "Source"],
                            ([str(i), r["claim"], f"**{r['verdict']}**", r["source"]] for i, r in enumerate(records, 1)))
    for index, r in enumerate(records, 1):
        lines += ["", f"## {index}. {r['claim']}: {r['verdict']}", "", *_wrapped(f"Claim: {r['text']} ({r['source']}).")]
        for name, key in (("Decided by", "statistic"), ("Numbers", "numbers"), ("To decide it", "needs")):
            if r[key]:
                lines += ["", *_wrapped(f"{name}: {r[key]}.")]
    return "\n".join(lines) + "\n"


def write_claims(config: dict, summaries: list[dict], out_dir: Path) -> list[Path]:
    """figures/claims.csv and claims.md."""
    records = check_claims(summaries, Path(config["results_dir"]) / "cells")
    out = Path(out_dir)
    write_text(out / "claims.csv", csv_text(records, COLUMNS))
    write_text(out / "claims.md", claims_markdown(config, summaries, records))
    return [out / "claims.csv", out / "claims.md"]
