-- demo/jobs.sql: the nightly settlement and the housekeeping, scheduled
-- with pg_cron (the cluster's cron.database_name is this database).
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT count(*) AS jobs FROM coupon.schedule_jobs() \gset
\echo
\echo '=== pg_cron jobs (cron.job) ==='
SELECT jobname, schedule, command FROM cron.job ORDER BY jobname;
