#!/usr/bin/env bash
# One GPU check of the lean training step (issue #31), writing a single markdown report:
#   1. the device;
#   2. saltbench bench for SAM ViT-B at 512 px, batch 2, bf16: eager, sdpa, sdpa + compile and sdpa +
#      activation checkpointing for frozen, S-SAM, LoRA r4 and SALT r4 (step-time ratios, step peak memory);
#   3. two config/paper_smoke.yaml cells (LoRA r4, SALT r4) for 2 epochs on the device;
#   4. saltbench plan for config/paper.yaml on the device, with its projected wall time for Table 1.
# Usage: scripts/gpu_check.sh [--device cuda|cpu] [--quick] [--out REPORT.md]     (make gpu-check)
# From the repository root of a bare copy: it builds .venv with `make install` when there is none.
# Without CHASE_DB1 (../shared/data) the smoke cells train on synthetic images, and without the paper's
# data and checkpoints the plan measures paper.yaml's rows with random weights on stand-in datasets of
# the paper's image counts; the report says which. --quick (the CPU test, tests/test_gpu_check.py) runs
# the same four parts small: one method and two step settings in fp32 (batch 2: the BatchNorm TAL needs two), one smoke cell for one
# epoch, and the plan of that one row; a few minutes on two cores. Budget on one H100: about 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda QUICK=0 OUT=results/gpu_check.md
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --device cuda|cpu, --quick, --out FILE)" >&2; exit 2 ;;
  esac
done
test -x .venv/bin/python || make install || { echo "gpu_check.sh: make install failed" >&2; exit 1; }
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="$PWD/.venv/bin:$PATH"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/saltbench-gpu-check.XXXXXX")
mkdir -p "$(dirname "$OUT")"
BEGAN=$SECONDS
FAILED=0

section() {  # section TITLE TIMEOUT_S COMMAND...: run it, its output into the report, its wall time noted
  local title="$1" limit="$2"; shift 2
  local start=$SECONDS
  echo "## $title" >> "$OUT"; echo >> "$OUT"
  echo "\`$*\`" >> "$OUT"; echo >> "$OUT"
  timeout "$limit" bash -c '"$@"' section "$@" > "$WORK/out.txt" 2>&1  # the parts are exported functions
  local rc=$?
  [ $rc -ne 0 ] && FAILED=1
  if [ -s "$WORK/table.md" ]; then cat "$WORK/table.md" >> "$OUT"; rm -f "$WORK/table.md"; else
    echo '```' >> "$OUT"; grep -v -e Warning -e warn "$WORK/out.txt" | tail -n 60 >> "$OUT"; echo '```' >> "$OUT"; fi
  [ $rc -ne 0 ] && { echo; echo "**exit status $rc** (124: stopped at the ${limit} s limit); last lines:"; echo '```';
                     tail -n 20 "$WORK/out.txt"; echo '```'; } >> "$OUT"
  echo >> "$OUT"; echo "_$((SECONDS - start)) s_" >> "$OUT"; echo >> "$OUT"
}

{
  echo "# saltbench GPU check"; echo
  echo "Written by \`scripts/gpu_check.sh --device $DEVICE$([ $QUICK = 1 ] && echo ' --quick')\` on $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo "## Device"; echo; echo '```'
  $PY -c "import torch, platform; print('torch', torch.__version__, '| python', platform.python_version()); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device visible to torch')"
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  lscpu 2>/dev/null | grep -m1 'Model name'; echo "cores: $(nproc)"
  echo '```'; echo
} > "$OUT"

SLACK=1  # part time limits: 300 + 90 + 120 s on a GPU (8.5 minutes); a CPU gets four times as long
[ "$DEVICE" = cpu ] && SLACK=4
if [ $QUICK = 1 ]; then
  BENCH="--methods lora_r4 --variants eager sdpa+checkpointing --precisions fp32 --batch 2 --warmup 1 --steps 1"
  ROWS="[lora_r4]" CELLS="sam_vit_b-lora_r4" EPOCHS=1 PRECISION=fp32
else
  BENCH="--methods frozen svd lora_r4 salt_r4 --variants eager sdpa sdpa+compile sdpa+checkpointing --precisions bf16
         --batch 2 --warmup 2 --steps 5"
  ROWS="[sam_zero_shot, svd, lora_r4, salt_r4]" CELLS="sam_vit_b-lora_r4 sam_vit_b-salt_r4" EPOCHS=2 PRECISION=bf16
fi

export DEVICE QUICK WORK PY BENCH
bench() { saltbench bench --device "$DEVICE" --backbones sam_vit_b $BENCH --cache "$WORK/cache" --out "$WORK/bench" \
          && cp "$WORK/bench/train_speed.md" "$WORK/table.md"; }
export -f bench
section "saltbench bench: SAM ViT-B at 512, batch 2" $((300 * SLACK)) bench

# the smoke grid: config/paper_smoke.yaml on this device, EPOCHS epochs, synthetic images without CHASE_DB1
if [ -d ../shared/data/CHASE_DB1 ]; then DATA="real CHASE_DB1 (4 train, 2 test images)"; DATASETS=""; else
  DATA="synthetic dark-fundus images (CHASE_DB1 is absent here)"
  DATASETS="datasets: {chase: null, synth: {kind: synthetic, modality: dark_fundus, n_train: 4, n_test: 2, size: 512, seed: 0}}"; fi
cat > "$WORK/smoke.yaml" <<YAML
extends: config/paper_smoke.yaml
results_dir: $WORK/smoke
figures_dir: $WORK/smoke_figures
device: $DEVICE
backbones: {sam_vit_b: {methods: $ROWS}}
train: {epochs: $EPOCHS, precision: $PRECISION}
paper: null
$DATASETS
YAML
smoke() {
  local cell ids; ids=$(saltbench cells --config "$WORK/smoke.yaml" | grep -v trial)
  for row in $CELLS; do
    cell=$(echo "$ids" | grep -m1 "^$row-") || { echo "no cell of $row in: $ids"; return 1; }
    saltbench cell --config "$WORK/smoke.yaml" --cell "$cell" || return 1
  done
  $PY - "$WORK/smoke/cells" "$DATA" > "$WORK/table.md" <<'PYTHON'
import json, sys
from pathlib import Path
print(f"Data: {sys.argv[2]}; random SAM ViT-B and CLIP weights (a path check, not a result).\n")
print("| cell | epochs | s / epoch (median) | train img/s | peak allocated MB | test Dice | step |")
print("|---|---|---|---|---|---|---|")
for path in sorted(Path(sys.argv[1]).glob("*/summary.json")):
    s = json.loads(path.read_text()); m = s["measured"]; step = s["trained"]["step"]
    print(f"| {s['cell']} | {m['epochs']} | {m['seconds_per_epoch_median']} | {m['train_images_per_s']} | "
          f"{m['peak_allocated_mb']} | {s['metrics']['dice_mean']:.4f} | {step['attention']}, "
          f"{step['checkpointed_blocks']} blocks checkpointed, compiled {step['compiled']} |")
PYTHON
}
export -f smoke
export CELLS DATA
section "paper_smoke cells on $DEVICE, $EPOCHS epoch(s)" $((90 * SLACK)) smoke

# the plan: config/paper.yaml when its data and checkpoints are here, else a stand-in of its image counts
if saltbench cells --config config/paper.yaml > /dev/null 2>&1 && [ $QUICK = 0 ]; then PLAN=config/paper.yaml; else
  PLAN="$WORK/plan.yaml"
  if [ $QUICK = 1 ]; then cp "$WORK/smoke.yaml" "$PLAN"; else
  cat > "$PLAN" <<YAML
# config/paper.yaml's rows and settings with random weights, on synthetic stand-ins of its datasets'
# image counts (the paper's splits): the plan times steps on random images either way; only counts matter.
extends: config/paper.yaml
results_dir: $WORK/plan
backbones:
  sam_vit_b: {weights: random, checkpoint: null, text_checkpoint: random}
  medsam: {weights: random, checkpoint: null, text_checkpoint: random}
datasets:
  arcade: {kind: synthetic, modality: dark_fundus, n_train: 700, n_test: 300, size: 64, seed: 0, root: null, label: ARCADE}
  xray_angio: {kind: synthetic, modality: dark_fundus, n_train: 93, n_test: 41, size: 64, seed: 0, root: null, label: XRay-Angio}
  dias: {kind: synthetic, modality: dark_fundus, n_train: 20, n_test: 10, size: 64, seed: 0, root: null, label: DIAS}
  rose: {kind: synthetic, modality: dark_fundus, n_train: 22, n_test: 8, size: 64, seed: 0, root: null, subset: null, label: ROSE}
  drive: {kind: synthetic, modality: dark_fundus, n_train: 14, n_test: 6, size: 64, seed: 0, root: null, label: DRIVE}
YAML
  fi
fi
plan() { saltbench plan --config "$PLAN" --device "$DEVICE" $([ $QUICK = 1 ] && echo "--steps 1 --gpu-memory 24GB"); }
export -f plan
export PLAN
section "saltbench plan: $([ "$PLAN" = config/paper.yaml ] && echo config/paper.yaml || echo "stand-in of $([ $QUICK = 1 ] && echo 'the smoke grid' || echo config/paper.yaml)") on $DEVICE" $((120 * SLACK)) plan

echo "Total: $((SECONDS - BEGAN)) s$([ $FAILED = 1 ] && echo '; at least one part FAILED (see its exit status)')." >> "$OUT"
rm -rf "$WORK"
echo "$OUT"
exit $FAILED
