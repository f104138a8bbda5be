-- 0008: which connection runs an ingest job, so that a job whose `semsql ingest` was killed
-- (SIGKILL, a crash, a lost machine: nothing that could mark it failed) is seen to be
-- abandoned instead of "running" for ever.

ALTER TABLE semsql.jobs ADD COLUMN backend_pid integer,
                        ADD COLUMN backend_start timestamptz;
COMMENT ON COLUMN semsql.jobs.backend_pid IS
    'pg_backend_pid() of the connection of the `semsql ingest` that runs the job, set when it '
    'starts running; with backend_start, a running job whose files are not all read '
    '(ingested_at IS NULL) and whose backend is gone was abandoned, and is marked failed.';
COMMENT ON COLUMN semsql.jobs.backend_start IS
    'pg_stat_activity.backend_start of backend_pid: it tells that backend from a later one '
    'that reuses its pid.';
