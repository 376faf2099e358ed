# Tables and figures are pure functions of the cells' summaries, per-image metrics and costs.
# The CSVs and the plot go into `snakemake --report` with a caption that says how they were measured.

CELL_FILES = ("summary.json", "per_image.csv", "cost.json")


def captioned(name, category):
    return report(FIGURES / name, caption=f"../report/{Path(name).stem}.rst", category=category)


rule figures:
    input:
        [RESULTS / "cells" / cell / name for cell in CELLS for name in CELL_FILES],
    output:
        FIGURES / "table1.md",
        captioned("table1.csv", "Table 1"),
        FIGURES / "table1.tex",
        FIGURES / "table1_stats.md",
        captioned("table1_stats.csv", "Table 1"),
        FIGURES / "vs_published.md",
        captioned("vs_published.csv", "Reproduced vs published"),
        FIGURES / "sam2_table.md",
        captioned("sam2_table.csv", "SAM2 table"),
        FIGURES / "cost.md",
        captioned("cost.csv", "Cost"),
        captioned("ablation_bubble.png", "Ablation"),
    params:
        grid=str(GRID_FILE),
        # a changed mapping to the published numbers re-writes the figures (Snakemake's params trigger)
        paper=json.dumps(GRID.get("paper"), sort_keys=True),
    shell:
        "saltbench figures --config {params.grid}"
