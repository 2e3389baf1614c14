#!/usr/bin/env bash
# Runs every test: Rust unit + integration tests on SQLite, the server's HTTP and migration
# tests again on a private PostgreSQL, then the Playwright suite in Debian's Chromium.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/scripts/setup.sh"
# The site only: the `neurovol` binary is built by `cargo test` below, with the same
# feature set as the tests, so dependencies are compiled once, not twice.
"$REPO_ROOT/scripts/build.sh" --site-only

log "lint gate: cargo fmt --check, clippy -D warnings (native, and the wasm32 crates)"
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo clippy -p frontend -p deid-wasm --target wasm32-unknown-unknown -- -D warnings

scratch=$(mktemp -d /tmp/neurovol-test.XXXXXX)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  if [[ -f "$scratch/pg/data/postmaster.pid" ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$scratch/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Tests that depend on outside parts must find them here, not skip: the shared assets,
# the Python reference checker (pydicom venv + dcm2niix) and the wasm32 build of deid.
export NEUROVOL_REQUIRE_ASSETS=1
export NEUROVOL_PYTHON="$("$REPO_ROOT/scripts/py-venv.sh" | tail -1)" NEUROVOL_REQUIRE_PYCHECK=1
log "building deid for wasm32 (native-vs-WASM byte equality test)"
cargo build -p deid --target wasm32-unknown-unknown --release --example wasm_abi
export NEUROVOL_DEID_WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/examples/wasm_abi.wasm" NEUROVOL_REQUIRE_WASM=1
# s3s-fs (installed by setup.sh) for the S3 object-store and pipeline tests
export NEUROVOL_REQUIRE_S3=1
# dcm2niix (Debian, installed by setup.sh) for the conversion tests
export NEUROVOL_REQUIRE_DCM2NIIX=1

log "Rust tests (SQLite)"
cargo test --no-fail-fast

log "Server tests against PostgreSQL"
pg_port=$(free_port)
mkdir -p "$scratch/pg"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$scratch" "$scratch/pg"; fi
as_pg "$pg_bin/initdb" -D "$scratch/pg/data" -A trust -U neurovol >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$scratch/pg/data" -l "$scratch/pg/log" -w \
  -o "-p $pg_port -k $scratch/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
# Same package selection as above (only the test targets are filtered), so nothing rebuilds.
export NEUROVOL_TEST_DATABASE_URL="postgres://neurovol@127.0.0.1:$pg_port/postgres"
cargo test --no-fail-fast --test accounts_http --test migrations --test upload_http --test account_http --test isolation_http \
  --test google_http
log "Pipeline tests against PostgreSQL and the S3 store (s3s-fs)"
# the PHI scan end to end, kill -9 recovery, and two processes sharing 20 scans
NEUROVOL_TEST_S3=1 cargo test --no-fail-fast --test pipeline_http -- phi_scan kill_9 two_processes
# deletion (nothing of the account left, the store down, kill -9) and the export, on S3
NEUROVOL_TEST_S3=1 cargo test --no-fail-fast --test deletion_http --test export_http
unset NEUROVOL_TEST_DATABASE_URL

log "End-to-end tests (Playwright, Chromium)"
# two servers started by scripts/serve.sh: the app as run.sh runs it (pipeline on), and one
# whose scans stay queued, for the tests that look at a scan right after its upload; and
# the loopback OpenID provider the app offers as Google sign-in
export NEUROVOL_E2E_PORT=$(free_port) NEUROVOL_E2E_QUEUED_PORT=$(free_port)
export NEUROVOL_E2E_OIDC_PORT=$(free_port) NEUROVOL_E2E_OIDC_CONTROL_PORT=$(free_port)
export NEUROVOL_E2E_DATA_DIR="$scratch/e2e-data" NEUROVOL_E2E_QUEUED_DATA_DIR="$scratch/e2e-queued-data"
(cd end2end && npx playwright test)
log "all tests passed"
