-- The login Grafana's data source uses: a member of llmtally_readonly (SELECT on the llmtally
-- schema's tables, nothing else; granted by migration 0008) that reads the schema's tables by their
-- plain names, in read-only transactions.  docker/init-db.sh runs it once, as the superuser, with
--   psql -v reader=NAME -v password=SECRET -v schema=llmtally -f grafana-reader.sql
-- The group role is created here too (idempotently) because the llmtally user that runs the
-- migrations may not create roles; where the schema exists already (a volume initialised before
-- migration 0008, which then granted nothing), the grants 0008 makes are made here.
\set ON_ERROR_STOP on
SELECT set_config('llmtally.schema', :'schema', false);
DO $$
DECLARE
    s text := current_setting('llmtally.schema');
    owner text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'llmtally_readonly') THEN
        CREATE ROLE llmtally_readonly NOLOGIN;
    END IF;
    SELECT pg_get_userbyid(nspowner) INTO owner FROM pg_namespace WHERE nspname = s;
    IF owner IS NOT NULL THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO llmtally_readonly', s);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO llmtally_readonly', s);
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO '
                       'llmtally_readonly', owner, s);
    END IF;
END
$$;
CREATE ROLE :"reader" LOGIN PASSWORD :'password' IN ROLE llmtally_readonly;
ALTER ROLE :"reader" SET search_path = :"schema";
ALTER ROLE :"reader" SET default_transaction_read_only = on;
ALTER ROLE :"reader" SET statement_timeout = '60s';
