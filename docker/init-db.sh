#!/bin/bash
# Two databases on one PostgreSQL server: Airflow's metadata (POSTGRES_DB) and the usage aggregates;
# and the read-only login Grafana uses (docker/grafana-reader.sql).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<EOSQL
CREATE USER llmtally WITH PASSWORD '${LLMTALLY_DB_PASSWORD}';
CREATE DATABASE llm_usage OWNER llmtally;
EOSQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname llm_usage \
    -v reader=llmtally_grafana -v password="${GRAFANA_DB_PASSWORD:?set in .env}" -v schema=llmtally \
    -f /opt/llmtally/grafana-reader.sql
