#!/usr/bin/env bash
# Quickstart: set up, generate the bundled synthetic "bell" scene, train flag4d on it, evaluate on the right
# (test) camera and render a time sweep. Everything lands under outputs/quickstart/.
#
# The schedule is shortened for a 2-core CPU (see README "Quickstart"); on a CUDA machine the same command runs on
# the GPU. ITERATIONS=... overrides the number of training iterations, METHOD=deform4d trains the baseline instead.
# The shortened schedule's flags are in scripts/quickstart_schedule.args, plus scripts/quickstart_<method>.args
# (benchmarks/flag4d_ablation.py and benchmarks/deform4d_synthetic.py measure the same schedule).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TORCHDYNAMO_DISABLE=1
ITERATIONS="${ITERATIONS:-1500}"
METHOD="${METHOD:-flag4d}"
SCENE=data/synth/bell
OUT=outputs/quickstart
DEVICE=$(.venv/bin/python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")

if [ ! -f "$SCENE/dataset.json" ]; then
  .venv/bin/fourd-synth --scene bell --out "$SCENE"
fi

.venv/bin/ns-train "$METHOD" --data "$SCENE" \
  --machine.device-type "$DEVICE" --vis tensorboard --viewer.quit-on-train-completion True \
  --output-dir outputs --experiment-name quickstart --timestamp bell \
  --max-num-iterations "$ITERATIONS" --steps-per-save "$ITERATIONS" --steps-per-eval-all-images 1000000 \
  $(cat scripts/quickstart_schedule.args) $(cat "scripts/quickstart_$METHOD.args" 2>/dev/null || true) \
  nerfies-data --downscale-factor 2

CONFIG="$OUT/$METHOD/bell/config.yml"
.venv/bin/ns-eval --load-config "$CONFIG" --output-path "$OUT/metrics.json"
.venv/bin/fourd-render-sweep --load-config "$CONFIG" --output "$OUT/time_sweep.mp4"
echo "Metrics: $OUT/metrics.json   Video: $OUT/time_sweep.mp4   Config: $CONFIG"
