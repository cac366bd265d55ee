#!/usr/bin/env bash
# The main job on an embedded default: sample logs -> daily pipeline -> HTML report (path printed).
# Uses AIRFLOW_CONN_LLM_USAGE_DB when set, else an embedded PostgreSQL under var/demo/pg.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
export LLMTALLY_SHARED="${LLMTALLY_SHARED:-$(cd "$root/.." && pwd)/shared}"
exec "$root/.venv/bin/python" "$root/scripts/run_daily.py" "$@"
