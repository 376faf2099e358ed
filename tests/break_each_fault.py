"""Break each fault handling of docs/reliability.md in a copy of the tree and check its test fails.

A test that passes whether or not the behaviour it guards is there proves nothing. For every row
of the fault table this applies one deliberate regression (a check disabled, a write made
non-atomic, a cache trusted blindly) to a fresh copy of the working tree, runs that row's tests
there, and reports whether they failed as they must. The repository itself is never modified.

    .venv/bin/python tests/break_each_fault.py            # every row (about 8 minutes on 2 cores)
    .venv/bin/python tests/break_each_fault.py --only nan  # rows whose name contains "nan"

Exit status 1 if any broken copy still passes its tests.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    row: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant("a second grid on the same results folder", "workflow/rules/cells.smk",
           "        # a changed method, dataset, backbone or training setting re-runs exactly the affected cells",
           "        grid=str(GRID_FILE),",
           ("tests/test_reliability.py::test_a_second_grid_on_the_same_results_never_retrains_the_first_grids_cells",)),
    Mutant("unknown method or baseline", "benchmark/config.py",
           'raise ConfigError(f"{section}: {error}") from None', "continue",
           ("tests/test_config.py::test_bad_config_names_the_problem",)),
    Mutant("unknown backbone", "benchmark/config.py",
           'raise ConfigError(f"backbones.{key}: {error}") from None', "pass",
           ("tests/test_config.py::test_bad_config_names_the_problem",)),
    Mutant("unknown dataset kind", "workflow/schemas/config.schema.yaml",
           "kind: {type: string, enum: [synthetic, salt, drive, rose, arcade, xray_angio, dias, chase_db1],",
           "kind: {type: string,", ("tests/test_config.py::test_bad_config_names_the_problem",)),
    Mutant("sv_rank out of range", "methods/salt.py",
           "if not 0 <= sv_rank <= r_max:", "if False:",
           ("tests/test_grids.py::test_ranks_that_do_not_fit_fail_at_validation",)),
    Mutant("numbers written 1e-3 or quoted", "benchmark/config.py",
           "config = _coerce_numbers(resolve_extends(copy.deepcopy(config), base), _schema())",
           "config = resolve_extends(copy.deepcopy(config), base)",
           ("tests/test_config.py::test_numbers_written_as_yaml_1_1_strings_are_numbers",)),
    Mutant("missing dataset folder or checkpoint", "benchmark/config.py",
           "        require_paths(config, base)  #", "        pass  #",
           ("tests/test_grids.py::test_validate_lists_every_missing_path_in_one_message",
            "tests/test_grids.py::test_missing_paths_name_each_file_its_key_and_its_source")),
    Mutant("missing split file", "benchmark/data/splits.py",
           'raise DatasetError(f"split file {path} does not exist")', "return {}",
           ("tests/test_datasets.py::test_missing_split_file_and_bad_split_file_are_errors",)),
    Mutant("content problems reported together", "benchmark/data/layout.py",
           "    for pair in pairs:\n        problems += _pair_problems(pair)\n",
           "    for pair in pairs:\n        problems += _pair_problems(pair)[:1]\n        if problems:\n            break\n",
           ("tests/test_data.py::test_validate_pairs_reports_every_problem_at_once",
            "tests/test_data.py::test_validate_pairs_caps_the_list_and_counts_the_rest")),
    Mutant("changed checksum", "benchmark/data/splits.py",
           "            if expected != actual:", "            if False:",
           ("tests/test_datasets.py::test_split_file_round_trip_and_every_change_is_named",
            "tests/test_datasets.py::test_changed_arcade_annotation_is_caught_by_its_checksum")),
    Mutant("checkpoint of the wrong architecture", "benchmark/models/checkpoints.py",
           'raise ValueError(f"checkpoint {path} does not fit {what}: " + "; ".join(problems))', "pass",
           ("tests/test_sam_backbones.py::test_wrong_or_missing_checkpoint_fails_clearly",)),
    Mutant("a method the device cannot run", "benchmark/config.py",
           "    check_devices(config)  #", "    pass  #",
           ("tests/test_qlora.py::test_a_device_without_4bit_kernels_fails_validation_naming_it",)),
    Mutant("truncated backbone checkpoint", "benchmark/models/checkpoints.py",
           "except Exception as error:  # torch raises", "except ImportError as error:  # torch raises",
           ("tests/test_reliability.py::test_a_truncated_backbone_checkpoint_is_named",)),
    Mutant("adapter file of another method", "benchmark/engine/adapters.py",
           "raise AdapterMismatchError(f\"{path}: trained with method {trained.get('name')!r}, not {wanted.get('name')!r}\")",
           "pass", ("tests/test_adapters.py::test_another_method_is_refused_naming_file_and_difference",)),
    Mutant("no GPU where one is required", "benchmark/engine/cell.py",
           "    if wanted == \"cpu\" and not config[\"allow_cpu\"]:", "    if False:",
           ("tests/test_engine.py::test_gpu_grid_without_a_gpu_stops_before_loading_anything",)),
    Mutant("two cells on one GPU", "benchmark/gpus.py",
           '                stack.enter_context(exclusive(path, f"GPU {device} slot {slot}"))', "                pass",
           ("tests/test_gpus.py::test_concurrent_claimers_get_distinct_gpus_and_one_more_is_refused",)),
    Mutant("SIGKILL mid-epoch: resume", "benchmark/engine/train.py",
           '    state = read_or_discard(checkpoint, lambda path: _read_checkpoint(path, device), "training checkpoint")',
           "    state = None", ("tests/test_engine.py::test_killed_cell_resumes_to_the_same_metrics",)),
    Mutant("SIGKILL mid-epoch: same metrics", "benchmark/engine/train.py",
           '    step.optimizer.load_state_dict(state["optimizer"])\n', "",
           ("tests/test_engine.py::test_killed_cell_resumes_to_the_same_metrics",)),
    Mutant("SIGKILL mid-write (checkpoint, summary)", "benchmark/io.py",
           "        write(Path(tmp))\n        os.chmod(tmp, ordinary_mode())\n        os.replace(tmp, path)",
           "        write(path)",
           ("tests/test_reliability.py::test_a_cell_killed_mid_write_resumes_to_the_same_metrics",)),
    Mutant("half-written temporaries of a killed run", "benchmark/engine/cell.py",
           "        stale.unlink()", "        pass",
           ("tests/test_reliability.py::test_a_cell_killed_mid_write_resumes_to_the_same_metrics",)),
    Mutant("corrupt checkpoint.pt", "benchmark/engine/train.py",
           '    state = read_or_discard(checkpoint, lambda path: _read_checkpoint(path, device), "training checkpoint")',
           "    state = _read_checkpoint(checkpoint, device) if checkpoint.exists() else None",
           ("tests/test_reliability.py::test_a_checkpoint_that_cannot_be_resumed_is_discarded_and_the_cell_trained_afresh",)),
    Mutant("checkpoint of a changed configuration", "benchmark/engine/train.py",
           'if state is not None and state.get("fingerprint") != fingerprint:',
           "if False:", ("tests/test_reliability.py::test_a_checkpoint_that_cannot_be_resumed_is_discarded_and_the_cell_trained_afresh",)),
    Mutant("corrupt summary.json", "benchmark/engine/cell.py",
           'summary = read_or_discard(summary_path, read_json_object, "cell summary")',
           "summary = read_json_object(summary_path) if summary_path.exists() else None",
           ("tests/test_reliability.py::test_a_damaged_summary_is_discarded_and_the_cell_rerun",)),
    Mutant("corrupt cost cache", "benchmark/cost/counting.py",
           'cached = read_or_discard(path, read_json_object, "GFLOPs cache")',
           "cached = read_json_object(path) if path.exists() else None",
           ("tests/test_reliability.py::test_damaged_cost_and_dataset_caches_are_recomputed",)),
    Mutant("corrupt text embedding cache", "benchmark/models/text.py",
           'cached = read_or_discard(path, _read_embedding, "text embedding cache")',
           "cached = _read_embedding(path) if path.exists() else None",
           ("tests/test_reliability.py::test_a_damaged_text_embedding_cache_is_recomputed",)),
    Mutant("corrupt SVD cache", "methods/svd_cache.py",
           "    except (SafetensorError, OSError, ValueError, RuntimeError) as error:",
           "    except ImportError as error:",
           ("tests/test_fast_engine.py::test_a_corrupt_svd_cache_file_is_recomputed_not_trusted",)),
    Mutant("NaN/inf loss", "benchmark/engine/train.py",
           "        _check_finite(mean[0], epoch + 1, cfg)\n", "",
           ("tests/test_reliability.py::test_a_non_finite_loss_stops_the_cell_with_its_epoch_and_no_summary",)),
    Mutant("disk full while writing", "benchmark/io.py",
           "        if os.path.exists(tmp):\n            os.unlink(tmp)", "        pass",
           ("tests/test_reliability.py::test_atomic_write_keeps_the_old_file_when_the_disk_fills",
            "tests/test_reliability.py::test_a_full_disk_during_a_checkpoint_keeps_the_previous_one")),
    Mutant("results on a shared file system", "benchmark/io.py",
           "        os.chmod(tmp, ordinary_mode())\n", "",
           ("tests/test_reliability.py::test_written_files_and_folders_get_the_users_umask",)),
    Mutant("two runs of one cell at once", "benchmark/engine/cell.py",
           'with exclusive(locks / f"{cell_id}.lock", f"cell {cell_id}"):',
           "if True:",
           ("tests/test_reliability.py::test_a_cell_another_process_is_running_is_refused_and_freed_when_it_dies",)),
    Mutant("a row's own train with a bad key or value", "benchmark/config.py",
           "            entry[\"train\"] = _coerce_numbers(entry[\"train\"], schema)\n            try:",
           "            entry[\"train\"] = _coerce_numbers(entry[\"train\"], schema)\n            continue\n            try:",
           ("tests/test_tuning.py::test_a_bad_row_setting_is_named_with_its_row",)),
    Mutant("a tuned grid that could only choose on test images", "benchmark/tuning.py",
           '    if config.get("tune") and not split_pairs(pairs, "val"):', "    if False:",
           ("tests/test_tuning.py::test_a_tuned_dataset_without_validation_images_is_refused_before_training",)),
    Mutant("a training subset not smaller than the training set", "benchmark/data/subsets.py",
           "    if n > len(train):", "    if False:",
           ("tests/test_claims.py::test_training_subsets_are_nested_seeded_and_leave_validation_and_test_alone",)),
    Mutant("a tuning trial whose loss diverges", "benchmark/engine/cell.py",
           "stop_on_nonfinite=cell.trial_of is not None", "stop_on_nonfinite=False",
           ("tests/test_tuning.py::test_a_diverged_trial_stops_scores_zero_and_the_grid_goes_on",)),
    Mutant("a choice that would read test scores", "benchmark/tuning.py",
           '    value = summary["trained"]["val_dice"]', '    value = summary["metrics"]["dice_mean"]',
           ("tests/test_tuning.py::test_the_choice_never_reads_a_test_score",)),
    Mutant("plugin that raises on import", "methods/__init__.py",
           "        except Exception as error:\n            del sys.modules[name]",
           "        except ImportError as error:\n            del sys.modules[name]",
           ("tests/test_reliability.py::test_a_plugin_that_raises_on_import_is_named",)),
    Mutant("plugin without a Method", "methods/__init__.py",
           "        if not isinstance(method, Method):\n            raise TypeError(f\"{PLUGINS_ENV}: plugin",
           "        if False:\n            raise TypeError(f\"{PLUGINS_ENV}: plugin",
           ("tests/test_methods.py::test_bad_plugins_fail_clearly",)),
    Mutant("method build returning a plain layer", "methods/base.py",
           "raise TypeError(f\"{name}: a method's build must return an AdaptedLayer, got {type(layer).__name__}\")",
           "pass", ("tests/test_reliability.py::test_a_method_whose_build_returns_a_plain_layer_is_named",)),
)


def _tree_files() -> list[str]:
    """Tracked files and untracked ones git does not ignore: the tree a commit of now would hold."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def _copy_tree(target: Path, files: list[str]) -> None:
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)


def _break(target: Path, mutant: Mutant) -> None:
    path = target / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.row}: the text to break occurs {text.count(mutant.old)} times in {mutant.path}; "
                         "update MUTANTS to the code")
    path.write_text(text.replace(mutant.old, mutant.new))


def _run_tests(target: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """pytest's exit status (0 passed, 1 failed) and its last line; slow tests run too when named."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "slow or not slow",
                          *tests], cwd=target, env=env, capture_output=True, text=True)
    lines = (run.stdout + run.stderr).strip().splitlines()
    return run.returncode, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run only the rows whose name contains this text")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only.lower() in m.row.lower()]
    files = _tree_files()
    still_passing = []
    with tempfile.TemporaryDirectory(prefix="saltbench-faults-") as scratch:
        intact = Path(scratch) / "intact"
        _copy_tree(intact, files)
        code, last = _run_tests(intact, tuple(sorted({t for m in chosen for t in m.tests})))
        print(f"{'intact copy':45s} {'passes' if code == 0 else 'FAILS'}: {last}", flush=True)
        if code != 0:
            return 1
        for number, mutant in enumerate(chosen):
            target = Path(scratch) / f"broken{number}"
            _copy_tree(target, files)
            _break(target, mutant)
            began = time.perf_counter()
            code, last = _run_tests(target, mutant.tests)
            verdict = "fails, as it must" if code == 1 else "STILL PASSES" if code == 0 else f"exit {code}"
            if code == 0:
                still_passing.append(mutant.row)
            print(f"{mutant.row:45s} {verdict} ({time.perf_counter() - began:.0f} s): {last}", flush=True)
            shutil.rmtree(target)
    if still_passing:
        print(f"tests that do not notice their fault: {', '.join(still_passing)}")
    return 1 if still_passing else 0


if __name__ == "__main__":
    sys.exit(main())
