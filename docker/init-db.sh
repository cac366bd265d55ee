#!/bin/bash
# Two databases on one PostgreSQL server: Airflow's metadata (POSTGRES_DB) and the usage aggregates.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<EOSQL
CREATE USER llmtally WITH PASSWORD '${LLMTALLY_DB_PASSWORD}';
CREATE DATABASE llm_usage OWNER llmtally;
EOSQL
