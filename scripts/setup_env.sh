#!/usr/bin/env bash
# Create ./.venv (once) and install the stack and its tools into it. Sourced by the other scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIT4DIT_VENV:-$ROOT/.venv}"
REQS="${1:-$ROOT/requirements.txt}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$VENV/.installed-$(cat "$ROOT/requirements.txt" "$REQS" "$ROOT/setup.py" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -r "$REQS"
  python -m pip install --quiet --no-deps -e "$ROOT"
  touch "$stamp"
fi
