#!/usr/bin/env bash
# A smoke run of every CUDA path, for a GPU machine: a few training steps in fp32, bf16, fp16
# (GradScaler) and channels_last; torchrun with one process on nccl; eval.py with sliding
# window and flip; resume; export. One PASS / FAIL line per check, then a table of images/s.
# Without CUDA every check is reported as SKIP (and the script exits 0).
#   bash scripts/gpu_check.sh            # uses .venv/bin/python when present, else python3
#   GPU_CHECK_DIR=/tmp/gc bash scripts/gpu_check.sh   # keep the runs there (default: a temp dir)
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
export NO_ALBUMENTATIONS_UPDATE=1
OUT=${GPU_CHECK_DIR:-$(mktemp -d)}
CHECKS=(fp32 bf16 fp16 channels_last torchrun_nccl eval_slide_flip resume export)

device=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
if [ -z "$device" ]; then
  for check in "${CHECKS[@]}"; do echo "SKIP $check (no CUDA device: torch.cuda.is_available() is False)"; done
  echo "summary: 0 PASS, 0 FAIL, ${#CHECKS[@]} SKIP"
  exit 0
fi
echo "device: $device ($("$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"))"

# A dilated ResNet-18 with the context module on the built-in dataset at 256x256, batch 16.
TRAIN=(model=dilated_resnet18_context dataset.size=256 data.batch_size=16 data.val_batch_size=16
       trainer.device=cuda trainer.max_iters=30 trainer.val_every=30 trainer.ckpt_every=10
       trainer.val_panels=0 trainer.progress=false)
declare -A RESULT RATE TAKEN
failed=0

record() {  # record CHECK STATUS START_SECONDS [RUN_DIR]: the line, and images/s from metrics.json
  local check=$1 status=$2 start=$3 run=${4:-}
  RESULT[$check]=$([ "$status" = 0 ] && echo PASS || echo FAIL)
  TAKEN[$check]=$(( $(date +%s) - start ))
  RATE[$check]=-
  if [ -n "$run" ] && [ -f "$run/metrics.json" ]; then
    RATE[$check]=$("$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print(f\"{m['step_images_per_s']:.1f}\")" "$run/metrics.json")
  fi
  [ "${RESULT[$check]}" = PASS ] || failed=$((failed + 1))
  echo "${RESULT[$check]} $check (${TAKEN[$check]} s; log: $OUT/$check.log)"
}

train() {  # train CHECK OVERRIDES...: a run in $OUT/CHECK
  local check=$1; shift
  local start; start=$(date +%s)
  "$PY" train.py "${TRAIN[@]}" "$@" hydra.run.dir="$OUT/$check" > "$OUT/$check.log" 2>&1
  record "$check" $? "$start" "$OUT/$check"
}

train fp32 trainer.precision=32
train bf16 trainer.precision=bf16
train fp16 trainer.precision=16
train channels_last trainer.precision=bf16 trainer.channels_last=true

start=$(date +%s)
"$PY" -m torch.distributed.run --standalone --nproc_per_node=1 train.py "${TRAIN[@]}" \
  hydra.run.dir="$OUT/torchrun_nccl" > "$OUT/torchrun_nccl.log" 2>&1
status=$?
grep -q "process group: nccl" "$OUT/torchrun_nccl.log" || status=1
record torchrun_nccl $status "$start" "$OUT/torchrun_nccl"

start=$(date +%s)
"$PY" eval.py checkpoint="$OUT/fp32/checkpoints/last.pt" device=cuda dataset.size=256 eval.mode=slide \
  eval.crop=[128,128] eval.stride=[96,96] eval.flip=true hydra.run.dir="$OUT/eval_slide_flip" > "$OUT/eval_slide_flip.log" 2>&1
status=$?
[ -f "$OUT/eval_slide_flip/metrics.json" ] || status=1
record eval_slide_flip $status "$start"

# Resume: stop at 10 of 30 iterations (trainer.max_iters=10 would change the schedule, so the
# first run is interrupted by SIGTERM once its first checkpoint exists), then continue.
start=$(date +%s)
"$PY" train.py "${TRAIN[@]}" trainer.precision=16 hydra.run.dir="$OUT/resume" > "$OUT/resume.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null && [ ! -f "$OUT/resume/checkpoints/last.pt" ]; do sleep 1; done
kill -TERM "$pid" 2>/dev/null
wait "$pid"
"$PY" train.py "${TRAIN[@]}" trainer.precision=16 trainer.resume=auto hydra.run.dir="$OUT/resume" >> "$OUT/resume.log" 2>&1
status=$?
grep -q "resumed from" "$OUT/resume.log" || status=1
record resume $status "$start" "$OUT/resume"

start=$(date +%s)
"$PY" scripts/export.py checkpoint="$OUT/fp32/checkpoints/last.pt" height=256 width=256 \
  hydra.run.dir="$OUT/export" > "$OUT/export.log" 2>&1
record export $? "$start"

echo
echo "| check | result | train images/s | seconds |"
echo "| --- | --- | ---: | ---: |"
for check in "${CHECKS[@]}"; do echo "| $check | ${RESULT[$check]} | ${RATE[$check]} | ${TAKEN[$check]} |"; done
echo "summary: $(( ${#CHECKS[@]} - failed )) PASS, $failed FAIL, 0 SKIP on $device"
[ "$failed" = 0 ]
