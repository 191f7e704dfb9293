#!/usr/bin/env bash
# rmbg-entrypoint prepare | serve | all (default)
#   prepare: build the model repository for this GPU, TensorRT and image into
#            $RMBG_MODELS_DIR/<key>/ unless a finished one is there (Kubernetes init container)
#   serve:   serve that repository on 0.0.0.0 (the Triton container)
#   all:     both (docker compose)
# The key (python -m rmbg_export.engine_key) changes with the GPU model, the TensorRT version,
# the image version and the build settings, so any of them changing rebuilds instead of loading
# an engine that does not fit. Pods that share a volume build a key once, under a lock.
set -euo pipefail

key() {
  python -m rmbg_export.engine_key --model "$RMBG_MODEL" --weights "$RMBG_WEIGHTS" \
    --target "$RMBG_TARGET" --max-batch "${RMBG_MAX_BATCH:-4}" ${RMBG_SIZE:+--size "$RMBG_SIZE"}
}

prepare() {
  local repo="$1"
  mkdir -p "$RMBG_MODELS_DIR"
  # The repository is written in place (gpu-ort configs hold absolute cache paths), so a
  # marker, written last, tells a finished build from one that was interrupted.
  (
    flock 9
    if [ -f "$repo/.complete" ]; then
      echo "model repository $repo is ready (built earlier for this GPU, TensorRT and image)"
    else
      rm -rf "$repo"
      rmbg build-repo --model "$RMBG_MODEL" --weights "$RMBG_WEIGHTS" --target "$RMBG_TARGET" \
        --max-batch "${RMBG_MAX_BATCH:-4}" ${RMBG_SIZE:+--size "$RMBG_SIZE"} --out "$repo"
      touch "$repo/.complete"
    fi
  ) 9>"$repo.lock"
}

serve() {
  local repo="$1"
  if [ ! -f "$repo/.complete" ]; then
    echo "no finished model repository at $repo: run 'rmbg-entrypoint prepare' first" >&2
    exit 1
  fi
  exec rmbg serve --model-repository "$repo" --host 0.0.0.0
}

repo="$RMBG_MODELS_DIR/$(key)"
case "${1:-all}" in
  prepare) prepare "$repo" ;;
  serve) serve "$repo" ;;
  all) prepare "$repo" && serve "$repo" ;;
  *) echo "usage: rmbg-entrypoint [prepare|serve|all]" >&2; exit 2 ;;
esac
