#!/usr/bin/env bash
# PivotRL on one GPU without a model hub: build a ~86M Llama from a config, SFT it on the bundled tool-use
# data (bf16 autocast), then run `pivotrl train` with examples/pivotrl_gpu.toml for a few steps.
#   bash examples/small_model_gpu.sh [RUN_DIR]        (default runs/small-gpu; about 6 min on one H100)
# Sizes and lengths are environment variables, so the same script runs a CPU smoke test, e.g.
#   HIDDEN=64 LAYERS=2 HEADS=2 INTER=128 SFT_STEPS=5 STEPS=2 PIVOTS=2 GROUP=4 TRAJ=3 DEVICE=cpu BF16=false \
#     bash examples/small_model_gpu.sh runs/small-cpu
set -euo pipefail
RUN="${1:-runs/small-gpu}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
BF16="${BF16:-true}"
mkdir -p "$RUN"

"$PY" examples/build_small_model.py --out "$RUN/base" --hidden "${HIDDEN:-768}" --layers "${LAYERS:-12}" \
  --heads "${HEADS:-12}" --intermediate "${INTER:-2048}" | tee "$RUN/model.json"

"$PY" -m agents.cli sft --config examples/sft_gpu.toml --set model="$RUN/base" --set out_dir="$RUN/sft" \
  --set steps="${SFT_STEPS:-150}" --set batch_size="${SFT_BATCH:-32}" --set lr="${SFT_LR:-5e-4}" \
  --set max_length=2048 --set warmup_steps=20 --set device="$DEVICE" --set bf16="$BF16"

# Tool calls here are short: 128 new tokens per turn; 60 trajectories (~390 candidate states) to profile.
train() {
  "$PY" -m agents.cli train --config examples/pivotrl_gpu.toml --set model="$RUN/sft/final" \
    --set out_dir="$RUN/pivotrl" --set steps="${STEPS:-6}" --set pivots_per_step="${PIVOTS:-64}" \
    --set group_size="${GROUP:-16}" --set grad_accum="${ACCUM:-32}" --set max_trajectories="${TRAJ:-60}" \
    --set max_new_tokens="${NEW_TOKENS:-128}" --set lr="${LR:-1e-5}" --set checkpoint_every=1000 \
    --set generation_batch_size="${GEN_BATCH:-256}" --set profile_states_per_batch="${PROFILE_STATES:-32}" \
    --set random_turns="${RANDOM_TURNS:-false}" --set device="$DEVICE" --set bf16="$BF16" --set tensorboard=false "$@"
}
# A briefly trained model may match no demonstration anywhere (no pivots): then train on random turns
# (the paper's ablation) so that the step figures are still measured; the profile is reused from cache.
train || { echo "pivotrl train failed (no pivots?): random turns instead, in $RUN/random-turns";
          train --set random_turns=true --set out_dir="$RUN/random-turns"; }
