# Shared settings for NeuroVol's scripts (sourced, not run).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Build outputs live outside the clone so a fresh clone on the same machine (CI) builds
# incrementally instead of from scratch.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/neurovol/target}"
export PATH="$HOME/.cargo/bin:$PATH"
# Assets (model weights, normative data) sit beside the clone on the team's machines.
if [[ -z "${NEUROVOL_ASSETS:-}" && -d "$REPO_ROOT/../shared/models" ]]; then
  export NEUROVOL_ASSETS="$(cd "$REPO_ROOT/../shared" && pwd)"
fi
SITE_DIR="$CARGO_TARGET_DIR/site"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
