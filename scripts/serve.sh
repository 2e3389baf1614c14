#!/usr/bin/env bash
# Starts the built app on its embedded defaults (SQLite, local object store, local CPU
# worker beside the binary). `run.sh` and the Playwright suite both start it here, so the
# browser tests run what a user runs.
#   scripts/serve.sh debug|release DATA_DIR
# The listen address is LEPTOS_SITE_ADDR (default 127.0.0.1:3000); any other NEUROVOL_*
# setting in the environment applies as usual.
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
  debug|release) profile=$1 ;;
  *) echo "usage: $0 debug|release DATA_DIR" >&2; exit 2 ;;
esac
[[ -n "${2:-}" ]] || { echo "usage: $0 debug|release DATA_DIR" >&2; exit 2; }
mkdir -p "$2"
export NEUROVOL_DATA_DIR="$(cd "$2" && pwd)"
export LEPTOS_SITE_ROOT="$SITE_DIR"
exec "$CARGO_TARGET_DIR/$profile/neurovol" serve
