#!/usr/bin/env bash
# De-identification benchmark on t1_mprage_sag_phi.zip: Rust native (release) vs the pydicom
# baseline, same removals, stored output. Creates the Python venv via scripts/py-venv.sh.
#   bench/deid.sh [RUST_RUNS] [PY_RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/py-venv.sh | tail -n1)"
cargo bench -p deid --bench deid_bench -- "${1:-15}"
"$PY" bench/deid_pydicom.py --runs "${2:-5}"
