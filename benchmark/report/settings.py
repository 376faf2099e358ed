"""Which rows trained with settings other than the grid's `train`, and how: the note every table
of a grid carries (Table 1, its statistics, vs published, the SAM2 and cost tables)."""
from __future__ import annotations

from benchmark.grid import tuned_param
from benchmark.report.rows import row_label
from benchmark.tuning import RULE


def _setting(values: dict) -> str:
    return ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}" for key, value in values.items())


def settings_notes(config: dict, summaries: list[dict]) -> list[str]:
    """Which rows trained with settings other than the grid's, and how: a tuning budget and each
    tuned row's chosen value per dataset, and rows with settings of their own. Nothing for a grid
    whose rows all train as its `train` says."""
    several = len({s["backbone"] for s in summaries if s["method"]["group"] != "baseline"}) > 1
    chosen: dict[str, dict[str, set]] = {}
    own: dict[str, str] = {}
    for summary in summaries:
        label, tuning = row_label(summary, several), summary.get("tuning")
        if tuning and tuning["role"] == "selected":
            chosen.setdefault(label, {}).setdefault(f"{tuning['value']:g}", set()).add(summary["dataset"]["label"])
        elif summary.get("train_overrides"):
            own[label] = _setting(summary["train_overrides"])
    notes = []
    if config.get("tune"):
        param, tune = tuned_param(config), config["tune"]
        rows = "every trained row" if tune["rows"] == "all" else "rows " + ", ".join(tune["rows"])
        budget = (f"trials of {tune['epochs']} epochs, the chosen value then trained at {config['train']['epochs']}"
                  if "epochs" in tune else f"trials at the grid's {config['train']['epochs']} epochs")
        picks = "; ".join(f"{label}: " + ", ".join(f"{value} on {', '.join(sorted(datasets))}" for value, datasets in values.items())
                          for label, values in chosen.items())
        notes.append(f"Tuning: {param} tuned over {len(tune[param])} values ({', '.join(f'{v:g}' for v in tune[param])}) "
                     f"on validation Dice for {rows} ({budget}; {RULE}). Chosen {param}: {picks or 'none yet'}.")
    if own:
        notes.append("Rows with training settings of their own (not tuned): "
                     + "; ".join(f"{label}: {setting}" for label, setting in own.items()) + ".")
    return notes
