# Datasets are generated or validated once; each cell trains and evaluates one model. In a tuned
# grid, a tuned row's trials run first, `select` chooses on their validation Dice, and the row's
# table cells then train with the chosen value (or take the trial that trained with exactly it).

rule dataset:
    output:
        RESULTS / "datasets" / "{dataset}.txt",
    log:
        RESULTS / "logs" / "dataset-{dataset}.log",
    shell:
        "saltbench data --config {GRID_FILE} --dataset {wildcards.dataset} > {output}.tmp 2> {log}"
        " && mv {output}.tmp {output}"

def cell_inputs(wc):
    cell = CELLS[wc.cell]
    selection = [RESULTS / "tuning" / f"{tuning_key(cell)}.json"] if cell.tuned else []
    return [RESULTS / "datasets" / f"{cell.dataset}.txt", *selection]


rule select:
    input:
        lambda wc: [RESULTS / "cells" / trial / "summary.json" for trial in TRIALS[wc.key]],
    output:
        RESULTS / "tuning" / "{key}.json",
    log:
        RESULTS / "logs" / "select-{key}.log",
    shell:
        "saltbench select --config {GRID_FILE} --key {wildcards.key} > {log} 2>&1"


rule cell:
    input:
        cell_inputs,
    output:
        RESULTS / "cells" / "{cell}" / "summary.json",
        RESULTS / "cells" / "{cell}" / "per_image.csv",
        RESULTS / "cells" / "{cell}" / "cost.json",
        RESULTS / "cells" / "{cell}" / "predictions.npz",
    log:
        RESULTS / "logs" / "cell-{cell}.log",
    params:
        # a changed method, dataset, backbone or training setting re-runs exactly the affected cells
        fingerprint=lambda wc: fingerprint(CELLS[wc.cell], GRID),
    resources:
        gpu=1,
    shell:
        "saltbench cell --config {GRID_FILE} --cell {wildcards.cell} > {log} 2>&1"
