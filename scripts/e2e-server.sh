#!/usr/bin/env bash
# The server Playwright starts: the debug build on NEUROVOL_E2E_PORT with its own data dir.
source "$(dirname "$0")/lib.sh"
export LEPTOS_SITE_ADDR="127.0.0.1:${NEUROVOL_E2E_PORT:-3100}"
export LEPTOS_SITE_ROOT="$SITE_DIR"
export NEUROVOL_LOG="${NEUROVOL_LOG:-warn}"
export NEUROVOL_DATA_DIR="${NEUROVOL_E2E_DATA_DIR:-$(mktemp -d /tmp/neurovol-e2e.XXXXXX)}"
# The pipeline (dcm2niix, segmentation) is covered by server/tests/pipeline_http.rs; here
# the upload tests look at a scan right after its upload, so it stays queued.
export NEUROVOL_PIPELINE_CONCURRENCY="${NEUROVOL_PIPELINE_CONCURRENCY:-0}"
exec "$CARGO_TARGET_DIR/debug/neurovol" serve
