"""Versioned, named schema migrations for PostgreSQL, recorded in ``<schema>.schema_migrations``.

Append new migrations to :data:`MIGRATIONS`; never edit an applied one.  ``{s}`` is the schema.

``usage_hourly`` (the public table BI tools query) is partitioned by month of ``hour`` (UTC):
:func:`llmtally.store.PostgresStore.load_day` creates ``usage_hourly_pYYYYMM`` partitions before a
load (in a short transaction of their own), and a default partition catches anything else, so old
months can be detached or dropped cheaply.  Its columns:

==============================  ===============================================================
``day``                         the local day (report time zone) the row belongs to: every reader
                                cuts days by this column, never by ``hour``
``hour``                        start of the *local* hour (timestamptz; the UTC hour in whole-hour
                                zones): a local hour never straddles two days (0002)
``model feature user_id         dimensions; ``''`` means not given (user_id is the ``user`` tag)
tenant service``
``status``, ``http_status``     the call's outcome (ok | error | timeout | abandoned | other) and
                                HTTP status (0: not known) (0002)
``requests``                    records
``prompt_tokens``,              billed tokens: reported by the server, else exact recount, else
``completion_tokens``           the service's estimate (see ``quality.prompt_*``, ``completion_*``)
``cached_tokens``,              as reported by the server (0 when not reported)
``reasoning_tokens``
``recounted_*_tokens``          exact recounts (sum over records that could be recounted)
``estimated_*_tokens``          the services' own estimates
``cost``, ``currency``          sum over priced requests (null when no price is known: never a
                                guess); ``unpriced_requests`` billed tokens but were not priced
``uncertain_requests``          timeouts billed from the recount, not from reported usage (0002)
==============================  ===============================================================

``losses`` (0003) holds what the services' loggers lost and wrote down as loss markers, per day,
service, host and reason with the window (``first_ts``, ``last_ts``) and ``records``;
``quality.loss_markers`` and ``quality.lost_records`` count them for the day.

``folds`` (0004) says, per day, service and dimension (``user_id``, ``tenant``), where distinct
values outgrew the cardinality limit and were folded into ``(other)`` in ``usage_hourly`` (the
``limit`` values that billed the most kept); ``quality.folded_values`` and
``quality.folded_requests`` sum them.

``usage_daily`` (0005) is a table (it was a view over ``usage_hourly``): ``usage_hourly`` summed over
the hours of each day, by every other key column and currency, written in the same transaction as
the day's hourly rows (and checked against them before commit).  Reads that do not group by hour
(totals, top lists, a year of days, BI) scan it instead of ``usage_hourly``: 1/24 of the rows or
fewer.  ``total_tokens`` is kept as a generated column for the queries written against the view.

``quality.provisional`` (0006) marks a day loaded by an intraday run from the records logged until
``quality.through``; the daily run's final load replaces it, and a provisional load never replaces
a final day.

``budget_alerts`` (0007) holds each budget threshold fired, once per budget, period and threshold
(its primary key: the first run to insert the row fires, any later or concurrent run does not),
with the spend and share when it fired; ``alert_log`` counts the alert messages sent per channel
for the alerts' rate limit.

``llmtally_readonly`` (0008, :data:`READONLY_ROLE`) is a ``NOLOGIN`` group role that may read every
table of the schema and nothing else: ``USAGE`` on the schema, ``SELECT`` on its tables, and default
privileges so the tables later migrations and loads create (the monthly partitions too) are readable
as well.  BI tools (the Grafana data source) log in as a user that is a member of it
(``docker/grafana-reader.sql``).  Roles belong to the whole PostgreSQL cluster, so the migration
creates it only when it is missing (schemas and databases of one cluster share it).  Where the
migrating user may not create roles and the role is missing, the migration warns and grants nothing
(BI is optional: a load never waits on it); ``docker/grafana-reader.sql``, run once as a superuser,
then creates the role and grants it the schema.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "READONLY_ROLE"]

READONLY_ROLE = "llmtally_readonly"
"""The group role that may read the aggregates and nothing else (0008; one per cluster)."""

_TOKENS = "bigint NOT NULL DEFAULT 0 CHECK ({c} >= 0)"


def _cols(*names: str) -> str:
    return ",\n    ".join(f"{n} " + _TOKENS.format(c=n) for n in names)


_HOURLY_COLS = _cols(
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "recounted_prompt_tokens",
    "recounted_completion_tokens",
    "estimated_prompt_tokens",
    "estimated_completion_tokens",
    "unpriced_requests",
)
_RECON_COLS = _cols(
    "records",
    "reported",
    "recounted",
    "drift_records",
    "prompt_drift_abs_tokens",
    "completion_drift_abs_tokens",
    "estimated",
    "not_recountable",
    "unknown_model",
    "recount_errors",
)
_QUALITY_COLS = _cols(
    "records",
    "prompt_tokens",
    "completion_tokens",
    "files",
    "bytes",
    "lines",
    "out_of_day",
    "duplicates",
    "partial_lines",
    "blank_lines",
    "quarantined",
    "legacy_records",
    "recounted",
    "not_recountable",
    "unknown_model",
    "recount_errors",
    "drift_records",
    "billed_reported",
    "billed_recount",
    "billed_estimate",
    "billed_missing",
    "unpriced_records",
)
_LEDGER_COLS = _cols("files", "bytes", "records", "quarantined", "partial_lines", "duplicates", "recounted")
_TOP_COLS = _cols("prompt_tokens", "completion_tokens", "total_tokens")

_0001 = f"""
CREATE TABLE {{s}}.usage_hourly (
    day date NOT NULL,
    hour timestamptz NOT NULL,
    model text NOT NULL,
    feature text NOT NULL,
    user_id text NOT NULL,
    tenant text NOT NULL,
    service text NOT NULL,
    {_HOURLY_COLS},
    cost numeric(30, 12) CHECK (cost >= 0),
    currency text,
    PRIMARY KEY (hour, day, model, feature, user_id, tenant, service)
) PARTITION BY RANGE (hour);
CREATE TABLE {{s}}.usage_hourly_default PARTITION OF {{s}}.usage_hourly DEFAULT;
CREATE INDEX usage_hourly_day_idx ON {{s}}.usage_hourly (day);
COMMENT ON TABLE {{s}}.usage_hourly IS
  'LLM token usage per UTC hour and model/feature/user/tenant/service. Billed numbers: reported, '
  'else exact recount, else estimate. Day D is replaced atomically on each load.';

CREATE TABLE {{s}}.reconciliation (
    day date NOT NULL,
    model text NOT NULL,
    service text NOT NULL,
    fingerprint text NOT NULL,
    {_RECON_COLS},
    prompt_drift_tokens bigint NOT NULL DEFAULT 0,
    completion_drift_tokens bigint NOT NULL DEFAULT 0,
    estimate_ape_sum double precision NOT NULL DEFAULT 0,
    estimate_pe_sum double precision NOT NULL DEFAULT 0,
    estimate_mape_pct double precision,
    estimate_bias_pct double precision,
    PRIMARY KEY (day, model, service, fingerprint)
);

CREATE TABLE {{s}}.quality (
    day date PRIMARY KEY,
    timezone text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    {_QUALITY_COLS}
);

CREATE TABLE {{s}}.ledger (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    day date NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    {_LEDGER_COLS},
    durations jsonb NOT NULL DEFAULT '{{{{}}}}'::jsonb,
    details jsonb NOT NULL DEFAULT '{{{{}}}}'::jsonb
);
CREATE INDEX ledger_day_idx ON {{s}}.ledger (day);

CREATE TABLE {{s}}.top_requests (
    day date NOT NULL,
    rank integer NOT NULL CHECK (rank > 0),
    record_id text NOT NULL,
    ts timestamptz NOT NULL,
    model text NOT NULL,
    service text NOT NULL,
    feature text NOT NULL,
    user_id text NOT NULL,
    tenant text NOT NULL,
    prompt_sha256 text NOT NULL,
    {_TOP_COLS},
    cost numeric(30, 12) CHECK (cost >= 0),
    currency text,
    tags jsonb NOT NULL DEFAULT '{{{{}}}}'::jsonb,
    PRIMARY KEY (day, rank)
);

CREATE TABLE {{s}}.prompt_digests (
    day date NOT NULL,
    prompt_sha256 text NOT NULL,
    feature text NOT NULL,
    requests bigint NOT NULL CHECK (requests >= 0),
    total_tokens bigint NOT NULL CHECK (total_tokens >= 0),
    first_ts timestamptz NOT NULL,
    last_ts timestamptz NOT NULL,
    PRIMARY KEY (day, prompt_sha256, feature)
);

CREATE TABLE {{s}}.quarantine (
    id bigserial PRIMARY KEY,
    day date NOT NULL,
    source text NOT NULL,
    line bigint NOT NULL,
    reason text NOT NULL,
    line_sha256 text NOT NULL
);
CREATE INDEX quarantine_day_idx ON {{s}}.quarantine (day);

CREATE TABLE {{s}}.report_archive (
    day date NOT NULL,
    lang text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    html text NOT NULL,
    json jsonb NOT NULL,
    PRIMARY KEY (day, lang)
);

CREATE VIEW {{s}}.usage_daily AS
SELECT day, model, feature, user_id, tenant, service, currency,
       sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens,
       sum(prompt_tokens + completion_tokens) AS total_tokens,
       sum(cached_tokens) AS cached_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       sum(cost) AS cost, sum(unpriced_requests) AS unpriced_requests
FROM {{s}}.usage_hourly
GROUP BY day, model, feature, user_id, tenant, service, currency;
"""


def _add(*names: str) -> str:
    return ",\n    ".join(f"ADD COLUMN {n} " + _TOKENS.format(c=n) for n in names)


_SOURCES = [f"{side}_{src}" for side in ("prompt", "completion") for src in ("reported", "recount")]
_SOURCES += ["prompt_estimate", "completion_estimate", "prompt_missing", "completion_missing"]
_RECON_ADD = _add(*_SOURCES, "not_billed", "uncertain")
_QUALITY_ADD = _add(
    "completion_reported", "completion_recount", "completion_estimate", "completion_missing",
    "not_billed", "uncertain", "status_error", "status_timeout", "status_abandoned",
)  # fmt: skip
_0002 = f"""
ALTER TABLE {{s}}.usage_hourly
    ADD COLUMN status text NOT NULL DEFAULT 'ok',
    ADD COLUMN http_status integer NOT NULL DEFAULT 0 CHECK (http_status >= 0),
    {_add("uncertain_requests")};
ALTER TABLE {{s}}.usage_hourly DROP CONSTRAINT usage_hourly_pkey;
ALTER TABLE {{s}}.usage_hourly
    ADD PRIMARY KEY (hour, day, model, feature, user_id, tenant, service, status, http_status);
COMMENT ON TABLE {{s}}.usage_hourly IS
  'LLM token usage per local hour, day and model/feature/user/tenant/service/status. Billed numbers '
  'follow the billing rule (failed calls bill nothing). Read days by the day column. Day D is '
  'replaced atomically on each load.';

ALTER TABLE {{s}}.reconciliation {_RECON_ADD};

ALTER TABLE {{s}}.quality RENAME COLUMN billed_reported TO prompt_reported;
ALTER TABLE {{s}}.quality RENAME COLUMN billed_recount TO prompt_recount;
ALTER TABLE {{s}}.quality RENAME COLUMN billed_estimate TO prompt_estimate;
ALTER TABLE {{s}}.quality RENAME COLUMN billed_missing TO prompt_missing;
ALTER TABLE {{s}}.quality {_QUALITY_ADD};

ALTER TABLE {{s}}.ledger
    ADD COLUMN sources jsonb NOT NULL DEFAULT '{{{{}}}}'::jsonb,
    ADD COLUMN forced boolean NOT NULL DEFAULT false;

DROP VIEW {{s}}.usage_daily;
CREATE VIEW {{s}}.usage_daily AS
SELECT day, model, feature, user_id, tenant, service, status, currency,
       sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens,
       sum(prompt_tokens + completion_tokens) AS total_tokens,
       sum(cached_tokens) AS cached_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       sum(cost) AS cost, sum(unpriced_requests) AS unpriced_requests,
       sum(uncertain_requests) AS uncertain_requests
FROM {{s}}.usage_hourly
GROUP BY day, model, feature, user_id, tenant, service, status, currency;
"""

_0003 = f"""
CREATE TABLE {{s}}.losses (
    id bigserial PRIMARY KEY,
    day date NOT NULL,
    service text NOT NULL,
    host text NOT NULL,
    records bigint NOT NULL CHECK (records >= 0),
    first_ts timestamptz NOT NULL,
    last_ts timestamptz NOT NULL,
    reason text NOT NULL
);
CREATE INDEX losses_day_idx ON {{s}}.losses (day);
COMMENT ON TABLE {{s}}.losses IS
  'Usage records the services'' loggers lost (queue full, disk full, read-only, unwritten at exit), '
  'from the loss markers in the raw logs: per service, host, reason and window. Not in usage_hourly.';

ALTER TABLE {{s}}.quality {_add("loss_markers", "lost_records")};
"""

_0004 = f"""
CREATE TABLE {{s}}.folds (
    id bigserial PRIMARY KEY,
    day date NOT NULL,
    service text NOT NULL,
    dimension text NOT NULL CHECK (dimension IN ('user_id', 'tenant')),
    "limit" bigint NOT NULL CHECK ("limit" >= 0),
    distinct_values bigint NOT NULL CHECK (distinct_values >= 0),
    folded bigint NOT NULL CHECK (folded >= 0),
    requests bigint NOT NULL CHECK (requests >= 0),
    tokens bigint NOT NULL CHECK (tokens >= 0)
);
CREATE INDEX folds_day_idx ON {{s}}.folds (day);
COMMENT ON TABLE {{s}}.folds IS
  'Users or tenants over the per-service daily cardinality limit, folded into (other) in usage_hourly '
  '(totals unchanged): how many distinct values, how many folded, with how many requests and tokens.';

ALTER TABLE {{s}}.quality {_add("folded_values", "folded_requests")};
"""

_DAILY_KEY = "day, model, feature, user_id, tenant, service, status, http_status, currency"
_DAILY_SUMS = [
    "requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
    "recounted_prompt_tokens", "recounted_completion_tokens", "estimated_prompt_tokens",
    "estimated_completion_tokens", "unpriced_requests", "uncertain_requests",
]  # fmt: skip
_DAILY_FILL = (
    f"INSERT INTO {{s}}.usage_daily ({_DAILY_KEY}, {', '.join(_DAILY_SUMS)}, cost) "
    f"SELECT {_DAILY_KEY}, {', '.join(f'sum({c})' for c in _DAILY_SUMS)}, sum(cost) "
    f"FROM {{s}}.usage_hourly GROUP BY {_DAILY_KEY}"
)

_0005 = f"""
DROP VIEW {{s}}.usage_daily;
CREATE TABLE {{s}}.usage_daily (
    day date NOT NULL,
    model text NOT NULL,
    feature text NOT NULL,
    user_id text NOT NULL,
    tenant text NOT NULL,
    service text NOT NULL,
    status text NOT NULL,
    http_status integer NOT NULL CHECK (http_status >= 0),
    {_cols(*_DAILY_SUMS)},
    cost numeric(30, 12) CHECK (cost >= 0),
    currency text,
    total_tokens bigint GENERATED ALWAYS AS (prompt_tokens + completion_tokens) STORED
);
CREATE INDEX usage_daily_day_idx ON {{s}}.usage_daily (day);
COMMENT ON TABLE {{s}}.usage_daily IS
  'usage_hourly summed over the hours of each local day (every other key and currency), written with '
  'the day in one transaction. Read this for days, totals and top lists; usage_hourly for hours.';
{_DAILY_FILL};
"""

_0006 = """
ALTER TABLE {s}.quality
    ADD COLUMN provisional boolean NOT NULL DEFAULT false,
    ADD COLUMN through timestamptz;
COMMENT ON COLUMN {s}.quality.provisional IS
  'true: loaded by an intraday run (llm_usage_hourly) from the records logged until "through"; the '
  'daily run replaces the day with the final one.';
"""

_0007 = """
CREATE TABLE {s}.budget_alerts (
    budget text NOT NULL,
    period_start date NOT NULL,
    threshold double precision NOT NULL CHECK (threshold > 0),
    fired_at timestamptz NOT NULL,
    spend numeric NOT NULL,
    unit text NOT NULL,
    share double precision NOT NULL,
    PRIMARY KEY (budget, period_start, threshold)
);
COMMENT ON TABLE {s}.budget_alerts IS
  'Budget thresholds fired: one row per budget, period (its first day) and threshold, inserted by the '
  'first run that saw the share reach it (ON CONFLICT DO NOTHING: a threshold fires once a period).';
CREATE TABLE {s}.alert_log (
    id bigserial PRIMARY KEY,
    channel text NOT NULL,
    sent_at timestamptz NOT NULL,
    findings integer NOT NULL CHECK (findings >= 0)
);
CREATE INDEX alert_log_channel_sent_at_idx ON {s}.alert_log (channel, sent_at);
COMMENT ON TABLE {s}.alert_log IS 'One row per alert message sent to a channel (the rate limit counts them).';
"""

_0008 = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READONLY_ROLE}') THEN
        BEGIN
            CREATE ROLE {READONLY_ROLE} NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another migration (another schema or database) created it meanwhile
            WHEN insufficient_privilege THEN  -- BI is optional: never keep a day from loading for it
                RAISE WARNING 'role {READONLY_ROLE} is missing and % may not create roles: the '
                              'aggregates get no read-only grants', current_user
                    USING HINT = 'as a superuser, run docker/grafana-reader.sql (it creates the role and '
                                 'grants it SELECT on the schema)';
                RETURN;
        END;
    END IF;
    GRANT USAGE ON SCHEMA {{s}} TO {READONLY_ROLE};
    GRANT SELECT ON ALL TABLES IN SCHEMA {{s}} TO {READONLY_ROLE};
    ALTER DEFAULT PRIVILEGES IN SCHEMA {{s}} GRANT SELECT ON TABLES TO {READONLY_ROLE};
END
$$;
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial_schema", _0001),
    ("0002_outcomes_sources_evidence", _0002),
    ("0003_losses", _0003),
    ("0004_folds", _0004),
    ("0005_daily_rollup", _0005),
    ("0006_provisional_days", _0006),
    ("0007_budgets_alerts", _0007),
    ("0008_readonly_role", _0008),
]
"""``(name, SQL)`` in order; ``{s}`` is replaced by the quoted schema name."""
