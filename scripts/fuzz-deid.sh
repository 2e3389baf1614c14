#!/usr/bin/env bash
# Bounded fuzzing of the deid crate without cargo-fuzz: builds the libFuzzer targets in
# crates/deid/fuzz with the sanitizer-coverage flags cargo-fuzz passes, seeds a corpus from
# the fixtures, and runs each target for SECONDS (default 60). Exit non-zero on a crash.
#   scripts/fuzz-deid.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
ASSETS="${NEUROVOL_ASSETS:-$(pwd)/../shared}"
T="${CARGO_TARGET_DIR:-target}/deid-fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# an explicit --target keeps RUSTFLAGS off build scripts and proc macros (as cargo-fuzz does)
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --manifest-path crates/deid/fuzz/Cargo.toml --target-dir "$T" --target "$TRIPLE" --bins
mkdir -p "$T/corpus/zip_deid" "$T/corpus/dicom_deid" "$T/artifacts"
for z in "$ASSETS"/fixtures/adv_*.zip; do
  [ "$(stat -c %s "$z")" -lt 400000 ] && cp -f "$z" "$T/corpus/zip_deid/" || true
done
# a few DICOM files (without preamble+DICM, which the target prepends)
python3 - "$ASSETS/fixtures" "$T/corpus/dicom_deid" <<'PY'
import sys, zipfile, os
src, dst = sys.argv[1], sys.argv[2]
for name in ("adv_two_series_mixed.zip", "adv_truncated_dicom.zip"):
    with zipfile.ZipFile(os.path.join(src, name)) as z:
        for i, info in enumerate(z.infolist()[:3]):
            raw = z.read(info)
            if raw[128:132] == b"DICM":
                open(os.path.join(dst, f"{name}-{i}"), "wb").write(raw[132:])
PY
for t in zip_deid dicom_deid; do
  "$T/$TRIPLE/release/$t" "$T/corpus/$t" -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=1048576 \
    -artifact_prefix="$T/artifacts/$t-" -print_final_stats=1
done
