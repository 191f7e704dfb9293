#!/usr/bin/env bash
# Build the model repository once (engine for this GPU), then serve. Inside the container the
# server must bind 0.0.0.0; docker-compose.yml publishes the ports on the host's 127.0.0.1 only.
set -euo pipefail
if [ ! -f "$RMBG_REPO/rmbg_$RMBG_MODEL/config.pbtxt" ]; then
  rmbg build-repo --model "$RMBG_MODEL" --weights "$RMBG_WEIGHTS" --target "$RMBG_TARGET" --out "$RMBG_REPO"
fi
exec rmbg serve --model-repository "$RMBG_REPO" --host 0.0.0.0
