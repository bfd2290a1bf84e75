-- One database per Patchbay service (each service owns its event log; services share nothing but
-- NATS). Idempotent: docker-compose.yml's `postgres-init` runs it on every `docker compose up`, so
-- a PostgreSQL volume made before these databases existed gets them too.
SELECT format('CREATE DATABASE %I', name)
FROM unnest(ARRAY[
  'patchbay_catalog',
  'patchbay_approvals',
  'patchbay_scanning',
  'patchbay_installing',
  'patchbay_wsus_sync'
]) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = name)
\gexec
