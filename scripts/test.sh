#!/usr/bin/env bash
# The whole test suite: lint, format, types, tests (unit and end-to-end against the real services).
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export LLMTALLY_SHARED="${LLMTALLY_SHARED:-$(cd "$root/.." && pwd)/shared}"
export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-$LLMTALLY_SHARED/tiktoken}"
"$root/scripts/setup.sh"
# shellcheck disable=SC1091
. .venv/bin/activate
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; python -m pytest "$@"
