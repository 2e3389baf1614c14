#!/usr/bin/env bash
# De-identification benchmark on t1_mprage_sag_phi.zip: Rust native (release) vs the pydicom
# baseline, same removals, stored output. Creates the Python venv via scripts/py-venv.sh.
#   bench/deid.sh [RUST_RUNS] [PY_RUNS]
# The issue-3 ratio is rust-native zip_stored (deidentify_zip: per-entry work on all cores)
# over pydicom zip_stored, from the same run; zip_stored_seq is the one-thread (wasm32) path.
# Figures and conditions: crates/deid/README.md "Measured". Run it on a quiet machine: with
# other builds on the cores the parallel path has nothing to gain.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/py-venv.sh | tail -n1)"
cargo bench -p deid --bench deid_bench -- "${1:-15}"
"$PY" bench/deid_pydicom.py --runs "${2:-5}"
