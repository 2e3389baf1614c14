#!/usr/bin/env bash
# Speed of the results page: the server's render of a processed scan's page (all regions,
# both charts), a fresh load until it is hydrated, the browser's redraw of the centile chart
# when another region is picked, and the slice viewer's first slices (both volumes drawn),
# in real Chromium against the app as run.sh serves it (release build). Prints medians, the
# WebGL renderer (SwiftShader, on the CPU, on a machine without a GPU) and the load.
#   bench/scan-page.sh [RUNS]        (default 20 of each)
#   NEUROVOL_E2E_PROFILE=debug bench/scan-page.sh    (the debug build the tests use)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO_ROOT"
export NEUROVOL_BENCH_RUNS=${1:-20}
"$REPO_ROOT/scripts/setup.sh"
export NEUROVOL_E2E_PROFILE=${NEUROVOL_E2E_PROFILE:-release}
if [[ $NEUROVOL_E2E_PROFILE == release ]]; then
  "$REPO_ROOT/scripts/build.sh" --release
else
  "$REPO_ROOT/scripts/build.sh" --site-only
  cargo build -p server --bin neurovol -p neurovol-worker --bin neurovol-worker
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
scratch=$(mktemp -d /tmp/neurovol-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export CI=1
export NEUROVOL_E2E_PORT=$(free_port) NEUROVOL_E2E_QUEUED_PORT=$(free_port)
export NEUROVOL_E2E_DATA_DIR="$scratch/app" NEUROVOL_E2E_QUEUED_DATA_DIR="$scratch/queued"
log "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
(cd end2end && npx playwright test --config bench.config.ts) | grep -E "median|passed|failed|Error"
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
