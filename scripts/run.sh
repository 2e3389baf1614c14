#!/usr/bin/env bash
# Sets up what is missing, builds (release), and serves NeuroVol on its embedded defaults:
# SQLite under ./data, local object store, local CPU worker. Ctrl-C stops it.
source "$(dirname "$0")/lib.sh"
"$REPO_ROOT/scripts/setup.sh"
"$REPO_ROOT/scripts/build.sh" --release
cd "$REPO_ROOT"
export NEUROVOL_DATA_DIR="${NEUROVOL_DATA_DIR:-$REPO_ROOT/data}"
export LEPTOS_SITE_ROOT="$SITE_DIR"
exec "$CARGO_TARGET_DIR/release/neurovol" serve
