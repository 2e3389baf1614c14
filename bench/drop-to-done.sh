#!/usr/bin/env bash
# Drop-to-done time of the PHI T1 fixture through the app as run.sh serves it (release
# build, SQLite, local store, local CPU worker), in real Chromium: drop the ZIP, review,
# confirm, wait for `done`. Prints each run and the median.
#   bench/drop-to-done.sh [RUNS]     (default 3; builds the release site and binaries first)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO_ROOT"
runs=${1:-3}
"$REPO_ROOT/scripts/setup.sh"
"$REPO_ROOT/scripts/build.sh" --release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
scratch=$(mktemp -d /tmp/neurovol-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export NEUROVOL_E2E_PROFILE=release CI=1
export NEUROVOL_E2E_PORT=$(free_port) NEUROVOL_E2E_QUEUED_PORT=$(free_port)
export NEUROVOL_E2E_DATA_DIR="$scratch/app" NEUROVOL_E2E_QUEUED_DATA_DIR="$scratch/queued"
log "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
(cd end2end && npx playwright test tests/results.spec.ts --repeat-each="$runs") | tee "$scratch/out.txt"
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -o 'drop → done [0-9.]* s' "$scratch/out.txt" | awk '{print $4}' | sort -n | awk '
  { v[NR] = $1; printf "run: %s s\n", $1 }
  END { if (NR == 0) exit 1; printf "median drop → done: %s s over %d runs\n", v[int((NR + 1) / 2)], NR }'
