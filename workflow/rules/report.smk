# Tables are pure functions of the cell summaries.

rule table1:
    input:
        [RESULTS / "cells" / cell / "summary.json" for cell in CELLS],
    output:
        FIGURES / "table1.md",
        FIGURES / "table1.csv",
    params:
        grid=str(GRID_FILE),
    shell:
        "saltbench table1 --config {params.grid}"
