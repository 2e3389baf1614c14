#!/usr/bin/env bash
# Builds the site (hydrate WASM + CSS + public files), the `neurovol` binary and the
# `neurovol-worker` it starts.
# What cargo-leptos would do, in a few visible steps (see ARCHITECTURE.md for why).
#   scripts/build.sh            debug build
#   scripts/build.sh --release  optimised build, WASM shrunk with wasm-opt
#   scripts/build.sh --site-only   debug site only (the test command builds the binaries)
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

profile=dev; wasm_profile=dev; out=debug; wasm_out=debug; site_only=false
case "${1:-}" in
  --release) profile=release; wasm_profile=wasm-release; out=release; wasm_out=wasm-release ;;
  --site-only) site_only=true ;;
  "") ;;
  *) echo "usage: $0 [--release|--site-only]" >&2; exit 2 ;;
esac

log "building the browser bundle (frontend → wasm32, profile $wasm_profile)"
cargo build -p frontend --lib --target wasm32-unknown-unknown --profile "$wasm_profile"

# a fresh pkg folder: no stale content-hashed files from an earlier build
rm -rf "$SITE_DIR/pkg"
mkdir -p "$SITE_DIR/pkg"
wasm-bindgen --target web --no-typescript --out-name neurovol --out-dir "$SITE_DIR/pkg" \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$wasm_out/frontend.wasm"
if [[ $profile == release ]]; then
  "$REPO_ROOT/end2end/node_modules/.bin/wasm-opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    -o "$SITE_DIR/pkg/neurovol_bg.wasm" "$SITE_DIR/pkg/neurovol_bg.wasm"
fi

log "building the de-identification worker (deid-wasm → wasm32, profile $wasm_profile)"
cargo build -p deid-wasm --lib --target wasm32-unknown-unknown --profile "$wasm_profile"
wasm-bindgen --target web --no-typescript --out-name deid_worker --out-dir "$SITE_DIR/pkg" \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$wasm_out/deid_wasm.wasm"
if [[ $profile == release ]]; then
  "$REPO_ROOT/end2end/node_modules/.bin/wasm-opt" -O3 --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    -o "$SITE_DIR/pkg/deid_worker_bg.wasm" "$SITE_DIR/pkg/deid_worker_bg.wasm"
fi
cp style/main.css "$SITE_DIR/pkg/neurovol.css"
cp -r public/. "$SITE_DIR/"

# Content-hashed names, so the files can be cached for good and a release never mixes old
# and new WASM (server: web/headers.rs). Leptos reads the page's names from hash.txt beside
# the binary; the de-identification worker script is rewritten to name its own files.
pkg="$SITE_DIR/pkg"
hash_of() { sha256sum "$1" | cut -c1-16; }
js=$(hash_of "$pkg/neurovol.js"); wasm=$(hash_of "$pkg/neurovol_bg.wasm"); css=$(hash_of "$pkg/neurovol.css")
mv "$pkg/neurovol.js" "$pkg/neurovol.$js.js"
mv "$pkg/neurovol_bg.wasm" "$pkg/neurovol.$wasm.wasm"
mv "$pkg/neurovol.css" "$pkg/neurovol.$css.css"
dw_js=$(hash_of "$pkg/deid_worker.js"); dw_wasm=$(hash_of "$pkg/deid_worker_bg.wasm")
mv "$pkg/deid_worker.js" "$pkg/deid_worker.$dw_js.js"
mv "$pkg/deid_worker_bg.wasm" "$pkg/deid_worker.$dw_wasm.wasm"
sed -i -e "s|/pkg/deid_worker.js|/pkg/deid_worker.$dw_js.js|" -e "s|/pkg/deid_worker_bg.wasm|/pkg/deid_worker.$dw_wasm.wasm|" \
  "$SITE_DIR/deid-worker.js"
grep -q "deid_worker.$dw_js.js" "$SITE_DIR/deid-worker.js" && grep -q "deid_worker.$dw_wasm.wasm" "$SITE_DIR/deid-worker.js" \
  || { echo "build: public/deid-worker.js no longer names /pkg/deid_worker.js and its wasm" >&2; exit 1; }

# The slice viewer: NiiVue's self-contained ESM bundle (pinned in viewer/package.json),
# content-hashed like the rest, with the notices of what it bundles; viewer.js names it.
niivue_pkg="$REPO_ROOT/viewer/node_modules/@niivue/niivue"
if [[ "$(node -p 'require(process.argv[1]).version' "$niivue_pkg/package.json" 2>/dev/null || true)" \
      != "$(node -p 'require(process.argv[1]).dependencies["@niivue/niivue"]' "$REPO_ROOT/viewer/package.json")" ]]; then
  log "npm: installing the viewer's packages (NiiVue)"
  (cd "$REPO_ROOT/viewer" && npm ci --no-audit --no-fund --loglevel=error)
fi
nv_js=$(hash_of "$niivue_pkg/dist/index.js")
cp "$niivue_pkg/dist/index.js" "$pkg/niivue.$nv_js.js"
sed -e "s|\"/pkg/niivue.js\"|\"/pkg/niivue.$nv_js.js\"|" "$REPO_ROOT/viewer/viewer.js" > "$SITE_DIR/viewer.js"
grep -q "niivue.$nv_js.js" "$SITE_DIR/viewer.js" \
  || { echo "build: viewer/viewer.js no longer names /pkg/niivue.js" >&2; exit 1; }
node "$REPO_ROOT/viewer/notices.mjs" "$REPO_ROOT/viewer/node_modules" > "$pkg/niivue.licences.txt"
for profile_dir in debug release; do
  mkdir -p "$CARGO_TARGET_DIR/$profile_dir"
  printf 'js: %s\nwasm: %s\ncss: %s\n' "$js" "$wasm" "$css" > "$CARGO_TARGET_DIR/$profile_dir/hash.txt"
done

log "site ready in $SITE_DIR ($(du -h "$pkg/neurovol.$wasm.wasm" | cut -f1) WASM)"
$site_only && exit 0

# Every binary the server starts goes beside `neurovol`, where it looks for them.
log "building the server and the segmentation worker (profile $profile)"
cargo build -p server --bin neurovol -p neurovol-worker --bin neurovol-worker --profile "$profile"
log "built $CARGO_TARGET_DIR/$out/neurovol and neurovol-worker"
