#!/usr/bin/env bash
# Set everything up from nothing and run the whole test suite (lint first).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh" "$ROOT/requirements-dev.txt"
cd "$ROOT"
ruff check .
python -m pytest "$@"
