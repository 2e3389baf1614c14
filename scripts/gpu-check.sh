#!/usr/bin/env bash
# Device check of the GPU engine, in one go on a freshly started GPU machine:
#   builds `neurovol` (release) unless NEUROVOL_BIN names a built one, segments the T1
#   reference input with the default model and mindgrab on the GPU engine and on the CPU
#   engine, compares the two label volumes (per-label Dice), and prints model time,
#   end-to-end time and peak GPU memory (nvidia-smi, sampled every 50 ms).
#
#   scripts/gpu-check.sh                       # assets in ../shared or $NEUROVOL_ASSETS
#   NEUROVOL_BIN=/path/to/neurovol scripts/gpu-check.sh
#
# Needs a Vulkan driver for the GPU (NVIDIA's ships one with the driver: libnvidia-gl /
# nvidia_icd.json; in a container, NVIDIA_DRIVER_CAPABILITIES must include `graphics`),
# the Vulkan loader (libvulkan1) and python3 (the comparison uses its standard library).
# Exit status: 0 when every label's Dice ≥ 0.999, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
assets=${NEUROVOL_ASSETS:-$(cd .. && pwd)/shared}
# NEUROVOL_CHECK_INPUT: another NIfTI (a small one checks the script itself on lavapipe)
input=${NEUROVOL_CHECK_INPUT:-$assets/reference/t1_crop/input_t1_crop.nii.gz}
[[ -f $input ]] || { echo "gpu-check: no input at $input (set NEUROVOL_ASSETS)" >&2; exit 2; }
export NEUROVOL_ASSETS="$assets"

bin=${NEUROVOL_BIN:-}
if [[ -z $bin ]]; then
  target=${CARGO_TARGET_DIR:-target}
  echo "== building neurovol (release)"
  cargo build --release --locked -p server --bin neurovol
  bin="$target/release/neurovol"
fi

echo "== device"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
command -v vulkaninfo >/dev/null && vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" || true

out=$(mktemp -d /tmp/neurovol-gpu-check.XXXXXX)
trap 'rm -rf "$out"' EXIT

peak_file="$out/mem"
sample_memory() {
  command -v nvidia-smi >/dev/null || return 0
  while :; do
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1
    sleep 0.05
  done >"$peak_file"
}

# NEUROVOL_CHECK_ENGINE=cpu checks the script itself where there is no GPU
engine=${NEUROVOL_CHECK_ENGINE:-gpu}

segment() { # run name, engine
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" segment "$input" --engine "$2" --out "$out/$1.nii.gz" --volumes "$out/$1.json" 2>"$out/$1.log" \
    || { cat "$out/$1.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$1: $(tail -1 "$out/$1.log")"
  echo "$1: end to end (process start to outputs written) $(python3 -c "print(f'{$t1-$t0:.2f}')") s"
}

echo "== $engine engine (model21_104class + mindgrab)"
base=$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1 || echo 0)
sample_memory & sampler=$!
segment check "$engine"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
if [[ -s $peak_file ]]; then
  peak=$(sort -n "$peak_file" | tail -1)
  echo "check: peak GPU memory $((peak - base)) MiB above the idle $base MiB"
fi

echo "== CPU engine (the reference)"
segment reference cpu

echo "== labels, $engine against CPU"
python3 - "$out/check.nii.gz" "$out/reference.nii.gz" <<'PY'
import gzip, struct, sys
def labels(path):
    raw = gzip.open(path).read()
    offset = int(struct.unpack_from("<f", raw, 108)[0])
    if struct.unpack_from("<h", raw, 70)[0] != 2:
        sys.exit(f"{path}: expected uint8 labels")
    return raw[offset:]
a, b = labels(sys.argv[1]), labels(sys.argv[2])
if len(a) != len(b):
    sys.exit("the label volumes differ in size")
na, nb, both = [0] * 256, [0] * 256, [0] * 256
for x, y in zip(a, b):
    na[x] += 1; nb[y] += 1
    if x == y: both[x] += 1
dice = {v: 2 * both[v] / (na[v] + nb[v]) for v in range(256) if na[v] + nb[v]}
worst = min(dice, key=dice.get)
differ = sum(1 for x, y in zip(a, b) if x != y)
print(f"{len(dice)} labels, {differ} of {len(a)} voxels differ; lowest Dice {dice[worst]:.5f} (label {worst})")
sys.exit(0 if dice[worst] >= 0.999 else 1)
PY
