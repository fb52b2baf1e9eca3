#!/usr/bin/env bash
# What TensorBoard shows of segdil runs, checked in a real browser: trains two tiny runs on the
# built-in synthetic data (fp32, a few seconds each, two learning rates), serves them with
# TensorBoard on a free localhost port, and takes headless Chromium screenshots of the Time
# Series, Custom Scalars, Images and HParams pages into OUTPUT_DIR, with the validation panels
# as TensorBoard stores them (panels.png); then stops what it started.
#
#   bash scripts/tb_screenshots.sh [OUTPUT_DIR]      # default docs/img/tensorboard
#
# Chromium comes from Debian's package (apt-get install -y chromium); without it the script
# prints one SKIP line and exits 0. PYTHON overrides the interpreter (default .venv/bin/python).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-docs/img/tensorboard}"
python="${PYTHON:-$repo/.venv/bin/python}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [[ -z "$browser" ]]; then
    echo "SKIP tb_screenshots: no Chromium found (Debian: apt-get install -y chromium)"
    exit 0
fi

work="$(mktemp -d)"
tensorboard_pid=""
cleanup() {
    if [[ -n "$tensorboard_pid" ]]; then
        kill "$tensorboard_pid" 2>/dev/null || true
        wait "$tensorboard_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

export NO_ALBUMENTATIONS_UPDATE=1
cd "$repo"
mkdir -p "$out"
# Long enough to learn past "background everywhere" (mIoU 0.18), so the pictures show real curves.
for lr in 0.02 0.1; do
    echo "training runs/lr_$lr (400 iterations, about 40 s)"
    "$python" train.py trainer.max_iters=400 trainer.val_every=50 trainer.log_every=10 trainer.precision=32 \
        trainer.progress=false "dataset.lengths={train: 800, val: 40, test: 8}" \
        optim.lr="$lr" hydra.run.dir="$work/runs/lr_$lr" > "$work/train_$lr.log" 2>&1 \
        || { tail -20 "$work/train_$lr.log"; exit 1; }
done

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$python" -m tensorboard.main --logdir "$work/runs" --host 127.0.0.1 --port "$port" > "$work/tensorboard.log" 2>&1 &
tensorboard_pid=$!
url="http://127.0.0.1:$port"
# Ready when TensorBoard lists both runs.
for _ in $(seq 120); do
    if "$python" -c "import json, sys, urllib.request; sys.exit(len(json.load(urllib.request.urlopen('$url/data/runs'))) < 2)" 2>/dev/null; then
        break
    fi
    sleep 0.5
done

# page:window size (Images taller for a whole set of panels, HParams wider for the metric columns)
for shot in timeseries:1400,1000 custom_scalars:1400,1000 images:1400,1300 hparams:1800,900; do
    page="${shot%%:*}"
    "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$work/chromium_$page" \
        --window-size="${shot##*:}" --virtual-time-budget=15000 --screenshot="$work/$page.png" "$url/#$page" \
        > "$work/chromium_$page.log" 2>&1 || { tail -5 "$work/chromium_$page.log"; exit 1; }
    # 256 colours keep each picture small enough for the docs (< 250 KB).
    "$python" -c "from PIL import Image; import sys; Image.open(sys.argv[1]).convert('RGB').quantize(256).save(sys.argv[2], optimize=True)" \
        "$work/$page.png" "$out/$page.png"
    echo "$out/$page.png ($(( $(stat -c %s "$out/$page.png") / 1024 )) KB)"
done

# The panels at their own size, as TensorBoard stores them (the Images page fits them to a card).
"$python" - "$work/runs/lr_0.1" "$out/panels.png" <<'PY'
import io
import sys

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

events = EventAccumulator(sys.argv[1])
events.Reload()
panels = Image.open(io.BytesIO(events.Images("val_images/panels")[-1].encoded_image_string))
panels.quantize(256).save(sys.argv[2], optimize=True)
PY
echo "$out/panels.png ($(( $(stat -c %s "$out/panels.png") / 1024 )) KB)"
