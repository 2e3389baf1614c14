#!/usr/bin/env bash
# Creates (once) the Python venv used by the deid tests and the pydicom benchmark baseline:
# pydicom>=3, numpy, nibabel for ../shared/tools/check_deid.py. Outside the repo.
# Prints the venv's python path on stdout (last line). dcm2niix comes from Debian (apt).
set -euo pipefail
VENV="${NEUROVOL_PYENV:-${CARGO_TARGET_DIR:-$HOME/.cache/neurovol/target}/pyenv-deid}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pydicom, numpy, nibabel' 2>/dev/null; then
  PY="$(command -v python3)"
  "$PY" -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'pydicom>=3' numpy nibabel >&2
fi
if ! command -v dcm2niix >/dev/null 2>&1; then
  echo "warning: dcm2niix not on PATH (apt-get install dcm2niix)" >&2
fi
echo "$VENV/bin/python"
