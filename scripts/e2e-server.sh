#!/usr/bin/env bash
# The server Playwright starts: the debug build on NEUROVOL_E2E_PORT with its own data dir.
source "$(dirname "$0")/lib.sh"
export LEPTOS_SITE_ADDR="127.0.0.1:${NEUROVOL_E2E_PORT:-3100}"
export LEPTOS_SITE_ROOT="$SITE_DIR"
export NEUROVOL_LOG="${NEUROVOL_LOG:-warn}"
export NEUROVOL_DATA_DIR="${NEUROVOL_E2E_DATA_DIR:-$(mktemp -d /tmp/neurovol-e2e.XXXXXX)}"
exec "$CARGO_TARGET_DIR/debug/neurovol" serve
