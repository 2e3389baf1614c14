#!/usr/bin/env bash
# Sets up what is missing, builds (release), and serves NeuroVol on its embedded defaults:
# SQLite under ./data, local object store, local CPU worker. Ctrl-C stops it.
source "$(dirname "$0")/lib.sh"
"$REPO_ROOT/scripts/setup.sh"
"$REPO_ROOT/scripts/build.sh" --release
if [[ -z "${NEUROVOL_ASSETS:-}" ]]; then
  # No ../shared beside the clone: the pinned upstream model files, checked and derived once.
  export NEUROVOL_ASSETS="$HOME/.cache/neurovol/assets"
  log "model files: fetching into $NEUROVOL_ASSETS (checked against the manifest; once)"
  "$CARGO_TARGET_DIR/release/neurovol" assets --dest "$NEUROVOL_ASSETS"
fi
exec "$REPO_ROOT/scripts/serve.sh" release "${NEUROVOL_DATA_DIR:-$REPO_ROOT/data}"
