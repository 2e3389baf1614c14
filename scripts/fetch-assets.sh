#!/usr/bin/env bash
# Fetch NeuroVol's model assets on a fresh machine from the upstream URLs pinned in
# MANIFEST.json, refusing any file whose SHA-256 differs from the manifest.
#
#   scripts/fetch-assets.sh [MANIFEST.json] [DEST_DIR]
#
# MANIFEST defaults to $NEUROVOL_ASSETS/models/MANIFEST.json (NEUROVOL_ASSETS defaults to
# ../shared beside the repository); DEST_DIR defaults to the manifest's folder. Then point
# NEUROVOL_ASSETS at the folder above DEST_DIR.
#
# Needs bash, curl, sha256sum and python3 (only to read the JSON). Each file is downloaded to a
# temporary name, hashed, and moved into place only when the hash matches; a mismatch deletes
# the download and the script exits non-zero naming the file and both hashes. Files already
# present with the right hash are not downloaded again.
#
# Files without an upstream URL cannot be downloaded: the "derived" model.safetensors/arch.json
# (a re-layout of the upstream TF.js weights, see each entry's "regenerate" and RECIPE.md §0)
# and NeuroVol's own documents. The script lists them and whether they are present and intact.
# The Rust equivalent (same checks, used by the app) is crates/assets (`assets::fetch`).
# Documentation-grade: not run in CI, which has the assets beside the repository.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
assets=${NEUROVOL_ASSETS:-$repo/../shared}
manifest=${1:-$assets/models/MANIFEST.json}
dest=${2:-$(dirname "$manifest")}

for tool in curl sha256sum python3; do
  command -v "$tool" >/dev/null || { echo "fetch-assets: $tool is required" >&2; exit 2; }
done
[ -f "$manifest" ] || { echo "fetch-assets: manifest not found: $manifest" >&2; exit 2; }

# One tab-separated line per file: path, sha256, bytes, url ("-" when there is none).
# Paths are checked here because they decide where files are written.
list=$(python3 - "$manifest" <<'PY'
import json, re, sys
m = json.load(open(sys.argv[1]))
for f in m["files"]:
    p, h = f["path"], f["sha256"].lower()
    parts = p.split("/")
    if not p or p.startswith("/") or "\\" in p or any(x in ("", ".", "..") for x in parts):
        sys.exit(f"unsafe path in manifest: {p!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", h):
        sys.exit(f"bad sha256 for {p}")
    url = f.get("upstream_url") or "-"
    if url != "-" and not url.startswith("https://"):
        sys.exit(f"non-https url for {p}")
    print(f"{p}\t{h}\t{f['bytes']}\t{url}")
PY
)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

downloaded=0 present=0 failed=0
undownloadable=()
while IFS=$'\t' read -r path sha bytes url; do
  target=$dest/$path
  if [ -f "$target" ] && [ "$(sha_of "$target")" = "$sha" ]; then
    present=$((present + 1)); continue
  fi
  if [ "$url" = "-" ]; then
    undownloadable+=("$path"); continue
  fi
  mkdir -p "$(dirname "$target")"
  tmp=$(mktemp "$(dirname "$target")/.$(basename "$target").XXXXXX.part")
  # --max-filesize stops a body larger than the manifest says before it fills the disk
  if ! curl -fsSL --proto '=https' --retry 3 --max-filesize "$bytes" -o "$tmp" "$url"; then
    rm -f "$tmp"; echo "REFUSED $path: download from $url failed" >&2
    failed=$((failed + 1)); continue
  fi
  actual=$(sha_of "$tmp")
  if [ "$actual" != "$sha" ]; then
    rm -f "$tmp"
    echo "REFUSED $path: SHA-256 $actual, manifest expects $sha (download deleted)" >&2
    failed=$((failed + 1)); continue
  fi
  chmod 0644 "$tmp"  # mktemp creates 0600
  mv -f "$tmp" "$target"
  downloaded=$((downloaded + 1)); echo "ok $path"
done <<<"$list"

echo "fetch-assets: $downloaded downloaded, $present already present, $failed refused"
if [ ${#undownloadable[@]} -gt 0 ]; then
  echo "not downloadable (no upstream URL; regenerate per MANIFEST 'regenerate' or copy from a trusted assets folder, then re-run to verify):"
  printf '  %s\n' "${undownloadable[@]}"
fi
[ "$failed" -eq 0 ]
