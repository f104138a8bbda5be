-- 0013: a stage whose model no worker can load (missing weights, or turned off) is unavailable
-- for the whole stage, not failed on every asset. Its tasks wait (status 'waiting'), which an
-- asset's status and a job's completion do not count, and the worker that loads the model
-- queues them again when it registers (sql/030_worker.sql).

ALTER TABLE semsql.tasks
    DROP CONSTRAINT tasks_status_check,
    ADD CONSTRAINT tasks_status_check
        CHECK (status IN ('pending', 'running', 'done', 'failed', 'waiting'));
COMMENT ON COLUMN semsql.tasks.status IS
    'pending (due at next_attempt_at) -> running (leased) -> done | failed (its own input or '
    'processing failed, see last_error); waiting: its stage is unavailable (semsql.'
    'unavailable_stages) and it waits for a worker that loads the model.';

-- A report or a registration finds a stage's waiting tasks, and those an older release failed
-- because the model did not load, without reading the whole queue.
CREATE INDEX tasks_waiting_or_failed ON semsql.tasks (stage)
    WHERE status IN ('waiting', 'failed');

CREATE TABLE semsql.unavailable_stages (
    stage        text PRIMARY KEY REFERENCES semsql.stages (name)
                      ON UPDATE CASCADE ON DELETE CASCADE,
    reason       text NOT NULL,
    fix          text,
    reported_by  text NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE semsql.unavailable_stages IS
    'Stages whose model the last worker that tried could not run (it could not load it, or it '
    'is off there) while no live worker ran them; the row goes when a worker that runs the '
    'stage registers. Their tasks wait meanwhile.';
COMMENT ON COLUMN semsql.unavailable_stages.fix IS 'How to make the model available.';

COMMENT ON COLUMN semsql.assets.status IS
    'Enrichment: pending (stages queued or running), ready (every stage done, except those '
    'waiting for a model that is not available), failed (its own file or processing failed in '
    'a stage; see semsql.tasks).';
