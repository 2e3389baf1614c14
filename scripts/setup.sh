#!/usr/bin/env bash
# Installs what a fresh machine lacks; every step is skipped when already done.
source "$(dirname "$0")/lib.sh"

# mesa-vulkan-drivers + libvulkan1: lavapipe, the software Vulkan device the GPU engine's
# tests run on where there is no GPU
apt_packages=(chromium dcm2niix postgresql python3-venv mesa-vulkan-drivers libvulkan1)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for component in clippy rustfmt; do
  if ! rustup component list --installed | grep -q "^$component"; then
    log "rustup: adding $component (the lint gate)"
    rustup component add "$component"
  fi
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup: adding wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen's CLI must match the library version in Cargo.lock exactly.
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' "$REPO_ROOT/Cargo.lock")
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [[ "$have" != "$want" ]]; then
  log "cargo: installing wasm-bindgen-cli $want (about 5 minutes, once)"
  cargo install wasm-bindgen-cli --version "$want" --force
fi

# s3s-fs: a real S3 server on a folder, for the object-store tests (server/tests/object_store.rs).
s3s_fs_want=0.14.1
if [[ "$(s3s-fs --version 2>/dev/null | awk '{print $2}' || true)" != "$s3s_fs_want" ]]; then
  log "cargo: installing s3s-fs $s3s_fs_want (a few minutes, once)"
  cargo install s3s-fs --version "$s3s_fs_want" --features binary --locked --force
fi

# Playwright (driving Debian's Chromium; no browser download), binaryen's wasm-opt,
# oauth2-mock-server (the loopback OpenID provider of the Google sign-in tests) and
# axe-core (the accessibility check of the scan page).
if [[ ! -x "$REPO_ROOT/end2end/node_modules/.bin/playwright" || ! -x "$REPO_ROOT/end2end/node_modules/.bin/wasm-opt" \
      || ! -f "$REPO_ROOT/end2end/node_modules/oauth2-mock-server/package.json" \
      || ! -f "$REPO_ROOT/end2end/node_modules/@axe-core/playwright/package.json" ]]; then
  log "npm: installing end2end packages"
  (cd "$REPO_ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
