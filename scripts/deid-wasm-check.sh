#!/usr/bin/env bash
# Builds the deid crate for wasm32-unknown-unknown (examples/wasm_abi.rs, C ABI, no
# wasm-bindgen), checks native == WASM output bytes on every series fixture under Node,
# and prints the WASM benchmark (ZIP -> ZIP, stored and deflate 6) on the T1 fixture.
#   scripts/deid-wasm-check.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}"
cargo build -p deid --target wasm32-unknown-unknown --release --example wasm_abi
WASM="$T/wasm32-unknown-unknown/release/examples/wasm_abi.wasm"
NEUROVOL_DEID_WASM="$(realpath "$WASM")" NEUROVOL_REQUIRE_WASM=1 cargo test -p deid --test wasm_equality
ASSETS="${NEUROVOL_ASSETS:-$(pwd)/../shared}"
TMP="$(mktemp -d)"
for stored in 1 0; do
  node crates/deid/tests/wasm/deid_node.mjs "$WASM" "$ASSETS/fixtures/t1_mprage_sag_phi.zip" \
    "$(printf '07%.0s' {1..32})" "$TMP/out.zip" "$stored" "${1:-9}" 256 38.76
done
node crates/deid/tests/wasm/deid_node_files.mjs "$WASM" "$ASSETS/fixtures/t1_mprage_sag_phi.zip" "${1:-9}" 38.76
rm -rf "$TMP"
