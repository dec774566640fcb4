#!/usr/bin/env bash
# Set everything up from nothing and run the stack's main job on its embedded default.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
python -m dit4dit_policy.demo "$@"
