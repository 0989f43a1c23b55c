#!/usr/bin/env bash
# Train the built-in encoders (image -> W+ in one forward pass, docs/inversion.md) with `insetgan train-encoder`,
# niced and single-threaded like the generators' runs; each run resumes its latest state.
#
#   scripts/train_encoder.sh prepare face      # FFHQ-aligned 64x64 faces into $DATA/faces64 (dlib)
#   scripts/train_encoder.sh train face        # the face encoder into $RUNS/face (resumes its latest state)
#   scripts/train_encoder.sh train body        # the body encoder (for --outfit) into $RUNS/body, on the body
#                                              # dataset of scripts/train_default_models.sh ($DATA/bodies256)
#   scripts/train_encoder.sh package face      # its latest encoder (SNAP_FACE=000044: that snapshot), float16,
#                                              # as insetgan/assets/models/face-encoder.safetensors
#
# Settings (sized for a 2-core CPU): encoder input 128x128 (2x the 64x64 face), pyramid width 128,
# 4 generator samples (psi 0.5-1, style mixing 0.5) + 4 photos per step, Adam lr 2e-4, latent 1,
# pixel (L2) 1, feature distance 0.2 at 64 px, identity 0.5, delta penalty 0.05, one W+ row
# unlocked every 2 kimg, a snapshot every 4 kimg with its numbers in metrics.jsonl.
# The body: input 256x128 (the image itself), pyramid width 128, 2 samples + 2 photos per step, feature
# distance at 128 px, no identity loss, one row unlocked every 2 kimg.
# KIMG_FACE / KIMG_BODY set the runs' lengths (a longer one continues it); SHARED, DATA, RUNS, DEVICE the places,
# FACE_DATA the face dataset (default $DATA/faces64; the held-out photos are every 97th from the
# first, so a run may continue on the same photos prepared again from more sources).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin/insetgan}
SHARED=${SHARED:-../shared}
DATA=${DATA:-data}
RUNS=${RUNS:-runs-encoder}
DEVICE=${DEVICE:-auto}
KIMG_FACE=${KIMG_FACE:-400}
KIMG_BODY=${KIMG_BODY:-200}
FACE_DATA=${FACE_DATA:-$DATA/faces64}
BODY_DATA=${BODY_DATA:-$DATA/bodies256}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

train() {  # train ROLE DATA KIMG OPTIONS...: the encoder of the built-in ROLE, resumed from its latest state
  local role=$1 data=$2 kimg=$3 resume=()
  shift 3
  ls "$RUNS/$role"/state-*.pt >/dev/null 2>&1 && resume=(--resume)
  exec nice -n 15 "$BIN" train-encoder --network "default-$role" --data "$data" --outdir "$RUNS/$role" --kimg "$kimg" \
    --lr 0.0002 --psi-min 0.5 --psi-max 1 --style-mixing 0.5 --latent-weight 1 --pixel-weight 1 \
    --perceptual-weight 0.2 --delta-weight 0.05 --unlock-kimg 2 --snapshot-kimg 4 --holdout 64 --width 128 --seed 0 \
    --device "$DEVICE" --progress lines "$@" "${resume[@]}"
}

case "${1:-} ${2:-}" in
  "prepare face")
    nice -n 15 "$BIN" prepare faces "$SHARED/data/aaf/faces" --size 64 --out "$FACE_DATA" --progress lines ;;
  "train face")
    train face "$FACE_DATA" "$KIMG_FACE" --batch-fake 4 --batch-real 4 --perceptual-size 64 --identity-weight 0.5 \
      --input-scale 2 ;;
  "train body")
    train body "$BODY_DATA" "$KIMG_BODY" --batch-fake 2 --batch-real 2 --perceptual-size 128 --identity-weight 0 \
      --input-scale 1 ;;
  "package face")
    .venv/bin/python scripts/package_encoder.py "$RUNS/face/encoder-${SNAP_FACE:-latest}.safetensors" \
      insetgan/assets/models/face-encoder.safetensors ;;
  *) echo "usage: $0 prepare face | train face|body | package face" >&2; exit 2 ;;
esac
