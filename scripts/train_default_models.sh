#!/usr/bin/env bash
# Reproduce the built-in default models: prepare the three datasets from ../shared/data, train the
# body canvas (256x128), the face inset (64x64) and the shoes inset (32x32) with `insetgan train`,
# then store each G_ema in fp16 in insetgan/assets/models/ (the body keeps its region priors).
#
#   scripts/train_default_models.sh prepare            # datasets into $DATA (default data/)
#   scripts/train_default_models.sh pack               # JPEG zips (< 64 MiB each) to carry to the GPU machine
#   DEVICE=cuda scripts/train_default_models.sh train face   # one model; resumes its latest state
#   scripts/train_default_models.sh package            # fp16 copies into insetgan/assets/models/
#   SNAP_FACE=000136 SNAP_BODY=000180 SNAP_SHOES=000064 scripts/train_default_models.sh package   # as shipped
#
# Settings (sized for a 2-core CPU; MODEL_CARD.md has the runs): 128-D latents, 2 mapping layers,
# channel_base 2048, channel_max 128 (about 1.1M parameters, ~2.3 MB in fp16 each), batch 16,
# lr 0.002, noise inputs on and no augmentation. This is the recipe that keeps improving
# (measured: ../shared/experiments and MODEL_CARD.md): the earlier one (--no-noise, DiffAugment,
# R1 at 10x StyleGAN2-ADA's rule for the body too, an lr drop at 10-12 kimg) collapsed in every run; the
# dark speckle that --no-noise fought is a stage of training that passes. R1 gamma: 0.5 for the
# face and 0.13 for the shoes (10x the rule 0.0002*H^2/batch), 0.8 for the body (the rule).
# The face's lr is halved from 88 kimg on (LR_DROP_FACE; its curve had flattened at FDD 0.125
# and fell to 0.088 by 136 kimg after the drop); LR_DROP_BODY / LR_DROP_SHOES (unset: never) do
# the same for the others.
# GAMMA_FACE / GAMMA_BODY / GAMMA_SHOES override the R1 weights, AUG_FACE / AUG_BODY / AUG_SHOES the DiffAugment
# policies (default none); D_CHANNEL_BASE widens the discriminators only.
# The body trains against the plain strided discriminator (`--d-arch conv --lr-d 0.001`; StyleGAN2's
# residual one sat at chance against it, MODEL_CARD.md); D_ARCH_FACE / D_ARCH_BODY / D_ARCH_SHOES
# (resnet | conv) and LR_D_FACE / LR_D_BODY / LR_D_SHOES pick each model's discriminator and its lr.
# FACE_D_BODY gives the body a second discriminator on its face window (`--face-d`, its weight),
# FACE_D_ARCH_BODY its architecture (`--face-d-arch`, default the body's).
# D_ARCH_<MODEL>=projected trains against frozen ImageNet features (hinge loss, no R1; give it
# AUG_<MODEL>=color,translation,cutout); PROJ_D_<MODEL> adds a projected discriminator beside a resnet/conv
# one (`--proj-d`, its weight); D_FEATURE_RES_<MODEL> and D_HEAD_WIDTH_<MODEL> set its input size and width.
# KIMG_* set the length of each run (a run resumes its latest state, so a longer KIMG continues
# it); watch a run with scripts/eval_run.py (quality-KKKKKK.json per snapshot, curve.md).
# INIT=shipped starts a run that has no state yet from the shipped model of its role (`insetgan
# train --init`, a new discriminator trained alone, without R1, for D_WARMUP_KIMG first, default 12; the
# body's plain one needs 4): a run
# folder lost with its machine continues from the last shipped snapshot instead of from zero.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin/insetgan}
SHARED=${SHARED:-../shared}
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
DEVICE=${DEVICE:-auto}
KIMG_FACE=${KIMG_FACE:-600}
KIMG_BODY=${KIMG_BODY:-600}
KIMG_SHOES=${KIMG_SHOES:-300}
LR_DROP_FACE=${LR_DROP_FACE:-88}
CHANNEL_BASE=${CHANNEL_BASE:-2048}
CHANNEL_MAX=${CHANNEL_MAX:-128}
COMMON="--batch 16 --z-dim 128 --map-layers 2 --channel-base $CHANNEL_BASE --channel-max $CHANNEL_MAX --snapshot-kimg ${SNAPSHOT_KIMG:-4} --device $DEVICE"
[ -n "${D_CHANNEL_BASE:-}" ] && COMMON="$COMMON --d-channel-base $D_CHANNEL_BASE"  # a wider discriminator only

latest_state() { ls "$1"/state-*.pt 2>/dev/null | sort | tail -1; }

train_one() {  # name data kimg gamma aug lr role lr-drop-kimg|"" d-arch [lr-d] [face-d] [face-d-arch] (a packed $data.zip is used when present)
  local run="$RUNS/$1" resume=() data="$2" drop=() disc=(--d-arch "$9")
  [ -n "${8:-}" ] && drop=(--lr-drop-kimg "$8")
  [ -n "${10:-}" ] && disc+=(--lr-d "${10}")
  [ -n "${11:-}" ] && disc+=(--face-d "${11}")
  [ -n "${12:-}" ] && disc+=(--face-d-arch "${12}")
  local role=${7^^} var
  for var in D_FEATURE_RES:--d-feature-res D_HEAD_WIDTH:--d-head-width PROJ_D:--proj-d; do
    local name="${var%%:*}_$role"
    [ -n "${!name:-}" ] && disc+=("${var#*:}" "${!name}")
  done
  [ -f "$data.zip" ] && data="$data.zip"
  local warmup=12; [ "$9" != resnet ] && warmup=4  # the plain and projected discriminators learn within 4 kimg
  local init="${INIT:-}"; [ "$init" = shipped ] && init="default-$7"
  local state; state=$(latest_state "$run" || true)
  if [ -n "$state" ]; then
    resume=(--resume "$state")
  elif [ -n "$init" ]; then
    resume=(--init "$init" --d-warmup-kimg "${D_WARMUP_KIMG:-$warmup}")
  fi
  $BIN train --data "$data" --outdir "$run" --kimg "$3" --gamma "$4" --aug "$5" --lr "$6" "${drop[@]}" "${disc[@]}" \
      $COMMON "${resume[@]}"
}

case "${1:-}" in
  prepare)
    $BIN prepare faces "$SHARED/data/aaf/faces" --size 64 --out "$DATA/faces64" --zip
    $BIN prepare bodies "$SHARED/data/ccp/photos" --labels "$SHARED/data/ccp/labels" \
        --height 256 --width 128 --out "$DATA/bodies256" --zip
    $BIN prepare shoes "$SHARED/data/ccp/photos" --labels "$SHARED/data/ccp/labels" --size 32 --out "$DATA/shoes32" --zip
    ;;
  pack)
    for d in faces64 bodies256 shoes32; do
      .venv/bin/python scripts/pack_dataset.py "$DATA/$d" "$DATA/$d.zip"
    done
    ;;
  train)
    case "${2:-}" in
      face)  train_one face64 "$DATA/faces64" "$KIMG_FACE" "${GAMMA_FACE:-0.5}" "${AUG_FACE:-}" 0.002 face "$LR_DROP_FACE" \
                 "${D_ARCH_FACE:-resnet}" "${LR_D_FACE:-}" ;;
      body)  train_one body256 "$DATA/bodies256" "$KIMG_BODY" "${GAMMA_BODY:-0.8}" "${AUG_BODY:-}" 0.002 body "${LR_DROP_BODY:-}" \
                 "${D_ARCH_BODY:-conv}" "${LR_D_BODY:-0.001}" "${FACE_D_BODY:-}" "${FACE_D_ARCH_BODY:-}" ;;
      shoes) train_one shoes32 "$DATA/shoes32" "$KIMG_SHOES" "${GAMMA_SHOES:-0.13}" "${AUG_SHOES:-}" 0.002 shoes "${LR_DROP_SHOES:-}" \
                 "${D_ARCH_SHOES:-resnet}" "${LR_D_SHOES:-}" ;;
      *) echo "usage: $0 train face|body|shoes" >&2; exit 2 ;;
    esac
    ;;
  package)  # SNAP_BODY / SNAP_FACE / SNAP_SHOES pick a snapshot (kimg, e.g. 000008); default: the latest
    mkdir -p insetgan/assets/models
    $BIN convert "$RUNS/body256/network-${SNAP_BODY:-latest}.safetensors" insetgan/assets/models/body.safetensors --fp16
    $BIN convert "$RUNS/face64/network-${SNAP_FACE:-latest}.safetensors" insetgan/assets/models/face.safetensors --fp16
    $BIN convert "$RUNS/shoes32/network-${SNAP_SHOES:-latest}.safetensors" insetgan/assets/models/shoes.safetensors --fp16
    ;;
  *) echo "usage: $0 prepare | pack | train face|body|shoes | package" >&2; exit 2 ;;
esac
