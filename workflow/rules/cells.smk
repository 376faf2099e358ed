# Datasets are generated or validated once; each cell trains and evaluates one model.

rule dataset:
    output:
        RESULTS / "datasets" / "{dataset}.txt",
    log:
        RESULTS / "logs" / "dataset-{dataset}.log",
    params:
        grid=str(GRID_FILE),
    shell:
        "saltbench data --config {params.grid} --dataset {wildcards.dataset} > {output}.tmp 2> {log}"
        " && mv {output}.tmp {output}"

rule cell:
    input:
        lambda wc: RESULTS / "datasets" / f"{CELLS[wc.cell].dataset}.txt",
    output:
        RESULTS / "cells" / "{cell}" / "summary.json",
        RESULTS / "cells" / "{cell}" / "per_image.csv",
        RESULTS / "cells" / "{cell}" / "cost.json",
        RESULTS / "cells" / "{cell}" / "predictions.npz",
    log:
        RESULTS / "logs" / "cell-{cell}.log",
    params:
        grid=str(GRID_FILE),
        # a changed method, dataset, backbone or training setting re-runs exactly the affected cells
        fingerprint=lambda wc: fingerprint(CELLS[wc.cell], GRID),
    resources:
        gpu=1,
    shell:
        "saltbench cell --config {params.grid} --cell {wildcards.cell} > {log} 2>&1"
