# Tables and figures are pure functions of the cells' summaries, per-image metrics, costs, kept
# predictions and training logs (train_log.csv is written before the summary, so it is there too).
# Every file goes into `snakemake --report` with a caption that says how it was measured.

CELL_FILES = ("summary.json", "per_image.csv", "cost.json", "predictions.npz")


def captioned(name, category):
    return report(FIGURES / name, caption=f"../report/{Path(name).stem}.rst", category=category)


TUNING_FIGURES = [captioned("tuning.csv", "Tuning"), captioned("tuning.png", "Tuning")] if TRIALS else []
SIZE_FIGURE = [captioned("train_size.png", "Claims")] if has_size_axis(GRID) else []


rule figures:
    input:
        [RESULTS / "cells" / cell / name for cell in TABLE_CELLS for name in CELL_FILES],
        [RESULTS / "tuning" / f"{key}.json" for key in TRIALS],
    output:
        captioned("table1.md", "Table 1"),
        captioned("table1.csv", "Table 1"),
        captioned("table1.tex", "Table 1"),
        captioned("table1_stats.md", "Table 1"),
        captioned("table1_stats.csv", "Table 1"),
        captioned("vs_published.md", "Reproduced vs published"),
        captioned("vs_published.csv", "Reproduced vs published"),
        captioned("sam2_table.md", "SAM2 table"),
        captioned("sam2_table.csv", "SAM2 table"),
        captioned("cost.md", "Cost"),
        captioned("cost.csv", "Cost"),
        captioned("ablation_bubble.png", "Ablation"),
        captioned("pareto.png", "Cost"),
        captioned("qualitative.png", "Qualitative (Fig. 3)"),
        captioned("training_curves.png", "Training curves"),
        TUNING_FIGURES,
        captioned("claims.md", "Claims"),
        captioned("claims.csv", "Claims"),
        SIZE_FIGURE,
    params:
        # a changed mapping to the published numbers re-writes the figures (Snakemake's params trigger)
        paper=json.dumps(GRID.get("paper"), sort_keys=True),
    shell:
        "saltbench figures --config {GRID_FILE}"
