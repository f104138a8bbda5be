-- The embedder daemon's side of the database: claiming, finishing, failing and retrying tasks;
-- stages whose model is not available; live workers; vector spaces and their HNSW indexes;
-- status views; and semsql.embed_text, which turns text into a vector inside SQL by asking a
-- running worker.

-- Stages whose model is not available ----------------------------------------------------------
--
-- A worker that cannot run a stage (its model did not load, or is off there) reports it, and
-- while no live worker runs the stage its tasks wait: an asset is ready without them and a job
-- completes. The first worker that runs the stage takes them back when it registers. Both take
-- the stage's mutex first, so that of a report and a registration, the later one sees the
-- earlier: a report after the registration sees its worker alive and parks nothing; a
-- registration after the report takes back what the report parked.

CREATE OR REPLACE FUNCTION semsql.report_unavailable_stage(
    p_worker text, p_stage text, p_reason text, p_fix text
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    parked bigint[];
    touched bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM stages s WHERE s.name = p_stage) THEN
        RAISE EXCEPTION 'unknown stage %', coalesce(p_stage, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Most calls (one per poll) have nothing to do: no lock, no write.
    IF EXISTS (SELECT 1 FROM live_workers() w WHERE p_stage = ANY (w.stages)) THEN
        RETURN 0;  -- another worker runs it: the stage is available, its tasks are that one's
    END IF;
    IF EXISTS (SELECT 1 FROM unavailable_stages u
               WHERE u.stage = p_stage AND u.reason = p_reason
                 AND u.fix IS NOT DISTINCT FROM p_fix)
       AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.stage = p_stage AND t.status = 'pending')
       AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.stage = p_stage AND t.status = 'running'
                                              AND t.lease_expires_at <= now()) THEN
        RETURN 0;
    END IF;
    PERFORM take_mutex('stage_availability:' || p_stage);
    PERFORM pg_stat_clear_snapshot();  -- a fresh look, now that registrations take turns
    IF EXISTS (SELECT 1 FROM live_workers() w WHERE p_stage = ANY (w.stages)) THEN
        RETURN 0;
    END IF;
    INSERT INTO unavailable_stages AS u (stage, reason, fix, reported_by)
    VALUES (p_stage, p_reason, p_fix, p_worker)
    ON CONFLICT (stage) DO UPDATE
        SET reason = EXCLUDED.reason, fix = EXCLUDED.fix, reported_by = EXCLUDED.reported_by,
            reported_at = now()
        WHERE (u.reason, u.fix) IS DISTINCT FROM (EXCLUDED.reason, EXCLUDED.fix);
    -- Pending tasks, running ones whose worker's lease ran out (no live worker runs the
    -- stage), and those an older release failed because the model did not load (the first
    -- report of a stage finds them). SKIP LOCKED: one locked now is parked by the next report.
    SELECT coalesce(array_agg(t.id), '{}') INTO parked FROM (
        SELECT t.id FROM tasks t
        WHERE t.stage = p_stage
          AND (t.status = 'pending'
               OR (t.status = 'running' AND t.lease_expires_at <= now())
               OR (t.status = 'failed' AND model_load_error(t.stage, t.last_error)))
        FOR UPDATE SKIP LOCKED) AS t;
    WITH waiting AS (
        UPDATE tasks t
        SET status = 'waiting', attempts = 0, next_attempt_at = now(), last_error = NULL,
            rerun = false, started_at = NULL, finished_at = NULL,
            leased_by = NULL, leased_backend = NULL, lease_expires_at = NULL
        WHERE t.id = ANY (parked)
        RETURNING t.asset_id)
    SELECT array_agg(DISTINCT asset_id) INTO touched FROM waiting;
    PERFORM settle_assets(touched);  -- ready without them; jobs complete
    RETURN coalesce(cardinality(parked), 0);
END
$$;
COMMENT ON FUNCTION semsql.report_unavailable_stage(text, text, text, text) IS
    'Called by a worker that cannot run a stage: unless a live worker runs it, records it in '
    'semsql.unavailable_stages with the reason and the fix, and makes its pending tasks wait '
    '(assets and jobs no longer wait for them); returns how many tasks it parked.';

CREATE OR REPLACE FUNCTION semsql.model_load_error(p_stage text, p_error text) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The message of embedder.models.ModelLoadError, with which releases before 0013 failed
    -- every task of a stage whose model did not load.
    SELECT p_error LIKE replace(p_stage, '_', '\_') || ' model % could not be loaded: %';
$$;
COMMENT ON FUNCTION semsql.model_load_error(text, text) IS
    'Whether a task''s error says that its stage''s model could not be loaded (not a problem of '
    'the task''s own input).';

CREATE OR REPLACE FUNCTION semsql.resume_stages(p_stages text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    v_stage text;
    touched bigint[];
    n integer;
BEGIN
    IF coalesce(cardinality(p_stages), 0) = 0 THEN
        RETURN 0;
    END IF;
    FOR v_stage IN SELECT DISTINCT u.stage FROM unnest(p_stages) AS u(stage) ORDER BY 1 LOOP
        PERFORM take_mutex('stage_availability:' || v_stage);
    END LOOP;
    DELETE FROM unavailable_stages u WHERE u.stage = ANY (p_stages);
    -- Waiting tasks, and those an older release failed because the model did not load.
    WITH resumed AS (
        UPDATE tasks t
        SET status = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL,
            last_error = NULL
        WHERE t.stage = ANY (p_stages)
          AND (t.status = 'waiting'
               OR (t.status = 'failed' AND model_load_error(t.stage, t.last_error)))
        RETURNING t.asset_id)
    SELECT array_agg(DISTINCT asset_id), count(*) INTO touched, n FROM resumed;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    -- Enrichment goes on: the assets are pending until these are done.
    UPDATE assets SET status = 'pending' WHERE id = ANY (touched) AND status <> 'pending';
    PERFORM notify('semsql_tasks');
    RETURN n;
END
$$;
COMMENT ON FUNCTION semsql.resume_stages(text[]) IS
    'Called when a worker that runs these stages registers: they are available again, their '
    'waiting tasks (and those failed because the model could not be loaded) are pending again '
    'and their assets pending; returns how many tasks.';

-- Workers ------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.live_workers() RETURNS SETOF semsql.workers
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.* FROM semsql.workers w WHERE semsql.backend_alive(w.backend_pid, w.backend_start);
$$;
COMMENT ON FUNCTION semsql.live_workers() IS
    'The workers whose database connection is still open.';

CREATE OR REPLACE FUNCTION semsql.register_worker(
    p_name text, p_host text, p_pid integer, p_device text,
    p_stages text[], p_query_spaces text[], p_problems jsonb
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    DELETE FROM workers w WHERE w.name <> p_name
        AND NOT EXISTS (SELECT 1 FROM live_workers() l WHERE l.name = w.name);
    INSERT INTO workers (name, backend_pid, backend_start, host, pid, device, stages,
                         query_spaces, problems)
    SELECT p_name, pg_backend_pid(), a.backend_start, p_host, p_pid, p_device, p_stages,
           p_query_spaces, p_problems
    FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
    ON CONFLICT (name) DO UPDATE
        SET backend_pid = EXCLUDED.backend_pid, backend_start = EXCLUDED.backend_start,
            device = EXCLUDED.device, stages = EXCLUDED.stages,
            query_spaces = EXCLUDED.query_spaces, problems = EXCLUDED.problems,
            heartbeat_at = now();
    -- After the row above: a worker reporting one of these stages unavailable from now on
    -- sees this one and leaves their tasks alone.
    SELECT resume_stages(p_stages);
$$;
COMMENT ON FUNCTION semsql.register_worker(text, text, integer, text, text[], text[], jsonb) IS
    'Records a running worker on the calling connection (which must stay open while it runs) and '
    'forgets dead ones; p_stages are those it runs (its model loaded), which are available again.';

CREATE OR REPLACE FUNCTION semsql.worker_heartbeat(p_name text, p_lease interval) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    -- SKIP LOCKED: a task locked now is being finished by its worker; waiting could deadlock.
    UPDATE tasks SET lease_expires_at = now() + p_lease
    WHERE id IN (SELECT t.id FROM tasks t WHERE t.leased_by = p_name AND t.status = 'running'
                 FOR UPDATE SKIP LOCKED);
    UPDATE workers SET heartbeat_at = now() WHERE name = p_name;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION semsql.worker_heartbeat(text, interval) IS
    'Extends the leases of a worker''s running tasks; false when the worker is not registered (register it again).';

CREATE OR REPLACE FUNCTION semsql.unregister_worker(p_name text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    DELETE FROM workers WHERE name = p_name;
$$;
COMMENT ON FUNCTION semsql.unregister_worker(text) IS 'Forgets a worker that is stopping.';

-- Task bookkeeping ----------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.refresh_asset_status(p_asset_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    UPDATE assets a SET status = s.status
    FROM (SELECT t.asset_id,
                 CASE WHEN bool_or(t.status = 'failed') THEN 'failed'
                      -- waiting: its stage's model is not available; it does not count
                      WHEN bool_and(t.status IN ('done', 'waiting')) THEN 'ready'
                      ELSE 'pending' END AS status
          FROM tasks t JOIN stages st ON st.name = t.stage AND st.enabled
          WHERE t.asset_id = ANY (p_asset_ids)
          GROUP BY t.asset_id) AS s
    WHERE a.id = s.asset_id AND a.status IS DISTINCT FROM s.status;
$$;
COMMENT ON FUNCTION semsql.refresh_asset_status(bigint[]) IS
    'Sets assets failed when a task of an enabled stage failed, ready when all the others are '
    'done or waiting (for a model that is not available), else pending.';

CREATE OR REPLACE FUNCTION semsql.settle_assets(p_asset_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF coalesce(cardinality(p_asset_ids), 0) = 0 THEN
        RETURN;
    END IF;
    -- What this transaction's writes changed is rebuilt first (040): its requeues lock task
    -- rows, which must come before the mutex, as in every transaction that finishes tasks
    -- (the other order deadlocks with a worker finishing a task those requeues touch).
    PERFORM rebuild_marked_assets();
    -- Transactions that finish tasks take turns from here to their commit, so that of two
    -- finishing the last tasks of one asset or job, the second sees the first's work (READ
    -- COMMITTED: each statement below reads with a new snapshot).
    PERFORM take_mutex('settle_assets');
    PERFORM refresh_asset_status(p_asset_ids);
    PERFORM complete_jobs();
END
$$;
COMMENT ON FUNCTION semsql.settle_assets(bigint[]) IS
    'After tasks changed state: refreshes their assets'' status and completes finished ingest jobs.';

CREATE OR REPLACE FUNCTION semsql.requeue_tasks(p_asset_ids bigint[], p_stages text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    requeued bigint[];
BEGIN
    IF coalesce(cardinality(p_asset_ids), 0) = 0 OR coalesce(cardinality(p_stages), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- A running task read the old inputs: it goes back to pending when it finishes.
    UPDATE tasks SET rerun = true
    WHERE asset_id = ANY (p_asset_ids) AND stage = ANY (p_stages)
      AND status = 'running' AND NOT rerun;
    WITH changed AS (
        UPDATE tasks
        SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
            finished_at = NULL, leased_by = NULL, leased_backend = NULL, lease_expires_at = NULL
        WHERE asset_id = ANY (p_asset_ids) AND stage = ANY (p_stages)
          AND status IN ('done', 'failed')
        RETURNING asset_id)
    SELECT array_agg(DISTINCT asset_id) INTO requeued FROM changed;
    IF requeued IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE assets SET status = 'pending' WHERE id = ANY (requeued) AND status = 'ready';
    PERFORM notify('semsql_tasks');
    RETURN cardinality(requeued);
END
$$;
COMMENT ON FUNCTION semsql.requeue_tasks(bigint[], text[]) IS
    'Queues these stages again for these assets because their inputs changed; returns how many assets.';

-- Claiming and finishing tasks -----------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.claim_tasks(
    p_worker text, p_stage text, p_limit integer, p_lease interval DEFAULT '2 minutes'
) RETURNS TABLE (task_id bigint, asset_id bigint, uri text, sha256 text, root text,
                 bytes bigint, attempts integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    blocking text[];
    backends integer[];
    ids bigint[];
    more bigint[];
BEGIN
    -- A dependency holds a task back only while a live worker runs the dependency's stage;
    -- otherwise the task runs now, and runs again if the dependency finishes later.
    SELECT coalesce(array_agg(d), '{}') INTO blocking
    FROM stages s, unnest(s.depends_on) AS d
    WHERE s.name = p_stage
      AND d IN (SELECT name FROM stages WHERE enabled)
      AND d IN (SELECT unnest(w.stages) FROM live_workers() w);
    backends := ARRAY(SELECT pid FROM pg_stat_activity);

    -- Tasks whose worker is gone: its lease expired or its connection closed. Losing a worker
    -- is not an error of the task's, so it costs no attempt, however often it happens.
    SELECT coalesce(array_agg(id), '{}') INTO ids FROM (
        SELECT t.id FROM tasks t
        WHERE t.stage = p_stage AND t.status = 'running'
          AND (t.lease_expires_at <= now() OR t.leased_backend IS NULL
               OR t.leased_backend <> ALL (backends))
        ORDER BY t.id LIMIT p_limit
        FOR UPDATE OF t SKIP LOCKED) AS lost;

    IF cardinality(ids) < p_limit THEN
        SELECT coalesce(array_agg(id), '{}') INTO more FROM (
            SELECT t.id FROM tasks t
            WHERE t.stage = p_stage AND t.status = 'pending' AND t.next_attempt_at <= now()
              AND NOT EXISTS (SELECT 1 FROM tasks d
                              WHERE d.asset_id = t.asset_id AND d.stage = ANY (blocking)
                                AND d.status IN ('pending', 'running'))
            ORDER BY t.next_attempt_at, t.id
            LIMIT p_limit - cardinality(ids)
            FOR UPDATE OF t SKIP LOCKED) AS due;
    END IF;

    RETURN QUERY
    UPDATE tasks t
    SET status = 'running', leased_by = p_worker,
        lost_leases = t.lost_leases + (t.status = 'running')::integer,
        leased_backend = pg_backend_pid(), lease_expires_at = now() + p_lease,
        started_at = now(), finished_at = NULL, rerun = false
    FROM assets a
    WHERE t.id = ANY (ids || coalesce(more, '{}')) AND a.id = t.asset_id
    RETURNING t.id, t.asset_id, a.uri, a.sha256, a.root, a.bytes, t.attempts;
END
$$;
COMMENT ON FUNCTION semsql.claim_tasks(text, text, integer, interval) IS
    'Leases up to p_limit due tasks of one stage to a worker (FOR UPDATE SKIP LOCKED), taking back '
    'those of dead workers (counted in lost_leases, not in attempts).';

CREATE OR REPLACE FUNCTION semsql.lock_owned_tasks(p_worker text, p_task_ids bigint[])
RETURNS SETOF bigint
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Locked until commit: nobody takes them back while their results are written.
    SELECT id FROM tasks
    WHERE id = ANY (p_task_ids) AND status = 'running' AND leased_by = p_worker
    ORDER BY id
    FOR UPDATE;
$$;
COMMENT ON FUNCTION semsql.lock_owned_tasks(text, bigint[]) IS
    'Of these tasks, those the worker still holds, locked for the transaction that writes their results.';

CREATE OR REPLACE FUNCTION semsql.complete_tasks(p_worker text, p_task_ids bigint[], p_model text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    finished_assets bigint[];
    finished_stages text[];
    n integer;
    again integer;
BEGIN
    WITH finished AS (
        UPDATE tasks t
        SET status = CASE WHEN t.rerun THEN 'pending' ELSE 'done' END,
            attempts = CASE WHEN t.rerun THEN 0 ELSE t.attempts END,
            finished_at = CASE WHEN t.rerun THEN NULL ELSE now() END,
            next_attempt_at = now(), model = p_model, last_error = NULL, rerun = false,
            leased_by = NULL, leased_backend = NULL, lease_expires_at = NULL
        WHERE t.id = ANY (p_task_ids) AND t.status = 'running' AND t.leased_by = p_worker
        RETURNING t.asset_id, t.stage, t.status)
    SELECT array_agg(DISTINCT asset_id), array_agg(DISTINCT stage), count(*),
           count(*) FILTER (WHERE status = 'pending')
    INTO finished_assets, finished_stages, n, again
    FROM finished;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    IF again > 0 THEN
        PERFORM notify('semsql_tasks');  -- inputs changed while they ran: due again
    END IF;
    -- The stages that read what these wrote must read it again (a no-op in the first pass,
    -- where they are still pending). Stages that read the asset document are not among them:
    -- the document's rebuild at commit queues them when its text changed (040).
    PERFORM requeue_tasks(finished_assets,
                          ARRAY(SELECT s.name FROM stages s
                                WHERE s.depends_on && finished_stages AND s.reads <> 'document'));
    IF EXISTS (SELECT 1 FROM stages s WHERE s.depends_on && finished_stages) THEN
        PERFORM notify('semsql_tasks');  -- their dependants may be due now
    END IF;
    PERFORM settle_assets(finished_assets);
    RETURN n;
END
$$;
COMMENT ON FUNCTION semsql.complete_tasks(text, bigint[], text) IS
    'Marks the worker''s tasks done with the model that made their results, and queues their dependants again.';

CREATE OR REPLACE FUNCTION semsql.fail_tasks(
    p_worker text, p_task_ids bigint[], p_errors text[], p_permanent boolean[],
    p_max_attempts integer DEFAULT 5, p_backoff interval DEFAULT '10 seconds',
    p_backoff_cap interval DEFAULT '1 hour'
) RETURNS TABLE (task_id bigint, status text, next_attempt_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    touched bigint[];
    statuses text[];
    due timestamptz[];
BEGIN
    WITH given AS (
        SELECT * FROM unnest(p_task_ids, p_errors, p_permanent) AS g(id, error, permanent)),
    changed AS (
        UPDATE tasks t
        -- This error is attempt t.attempts + 1.
        SET status = CASE WHEN (g.permanent OR t.attempts + 1 >= p_max_attempts) AND NOT t.rerun
                          THEN 'failed' ELSE 'pending' END,
            -- Exponential backoff with jitter (x0.5 .. x1.5), so that retries spread out.
            next_attempt_at = CASE
                WHEN g.permanent OR t.attempts + 1 >= p_max_attempts OR t.rerun THEN now()
                ELSE now() + least(p_backoff * power(2, t.attempts), p_backoff_cap)
                             * (0.5 + random()) END,
            finished_at = CASE WHEN (g.permanent OR t.attempts + 1 >= p_max_attempts)
                                    AND NOT t.rerun THEN now() END,
            attempts = CASE WHEN t.rerun THEN 0 ELSE t.attempts + 1 END,
            last_error = g.error, rerun = false,
            leased_by = NULL, leased_backend = NULL, lease_expires_at = NULL
        FROM given g
        WHERE t.id = g.id AND t.status = 'running' AND t.leased_by = p_worker
        RETURNING t.id, t.asset_id, t.status, t.next_attempt_at)
    SELECT array_agg(c.id), array_agg(DISTINCT c.asset_id), array_agg(c.status),
           array_agg(c.next_attempt_at)
    INTO ids, touched, statuses, due
    FROM changed c;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    -- Failed: dependants no longer wait for them. Pending: due again now, if inputs changed.
    PERFORM notify('semsql_tasks');
    PERFORM settle_assets(touched);
    RETURN QUERY SELECT * FROM unnest(ids, statuses, due);
END
$$;
COMMENT ON FUNCTION semsql.fail_tasks(text, bigint[], text[], boolean[], integer, interval, interval) IS
    'Records errors: a permanent one (or the last allowed attempt) fails the task, others retry later with backoff.';

CREATE OR REPLACE FUNCTION semsql.release_tasks(p_worker text, p_task_ids bigint[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE tasks
    SET status = 'pending', next_attempt_at = now(),
        rerun = false, leased_by = NULL, leased_backend = NULL, lease_expires_at = NULL
    WHERE id = ANY (p_task_ids) AND status = 'running' AND leased_by = p_worker;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM notify('semsql_tasks');
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION semsql.release_tasks(text, bigint[]) IS
    'Gives tasks back untouched (a stopping worker): pending again at once.';

CREATE OR REPLACE FUNCTION semsql.retry_failed_tasks(p_stages text[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    touched bigint[];
BEGIN
    WITH retried AS (
        UPDATE tasks
        SET status = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL
        WHERE status = 'failed' AND (p_stages IS NULL OR stage = ANY (p_stages))
        RETURNING asset_id)
    SELECT array_agg(DISTINCT asset_id) INTO touched FROM retried;
    IF touched IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE assets SET status = 'pending' WHERE id = ANY (touched) AND status <> 'pending';
    PERFORM notify('semsql_tasks');
    RETURN (SELECT count(*) FROM tasks
            WHERE asset_id = ANY (touched) AND status = 'pending' AND attempts = 0
              AND (p_stages IS NULL OR stage = ANY (p_stages)));
END
$$;
COMMENT ON FUNCTION semsql.retry_failed_tasks(text[]) IS
    'Queues failed tasks (of these stages, or all) again; their last error stays visible until they finish.';

CREATE OR REPLACE FUNCTION semsql.worker_has_work(p_stages text[]) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM tasks t JOIN stages s ON s.name = t.stage AND s.enabled
                   WHERE t.stage = ANY (p_stages) AND t.status IN ('pending', 'running'));
$$;
COMMENT ON FUNCTION semsql.worker_has_work(text[]) IS
    'Whether any task of these stages is pending (now or after a backoff) or running.';

-- The asset document (what the text vector embeds: semsql.asset_documents) and when the text
-- task is queued again are derived state of the asset, rebuilt with its search document by
-- one deferred trigger: sql/040_search_documents.sql.

-- Vector spaces ----------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.register_vector_space(
    p_space text, p_model text, p_dims integer, p_reset boolean DEFAULT false
) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    index_name text := vector_index_name(p_space);
    stage_name text := vector_space_stage(p_space);
    other record;
    definition text;
    dropped bigint[];
    other_dims boolean := false;
    outcome text := 'unchanged';
BEGIN
    IF stage_name IS NULL THEN
        RAISE EXCEPTION 'unknown vector space %', p_space USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_dims IS NULL OR p_dims NOT BETWEEN 1 AND 4000 THEN
        RAISE EXCEPTION 'the % model % gives % dimensions; a halfvec HNSW index takes 1 to 4000',
            p_space, p_model, p_dims;
    END IF;
    PERFORM take_mutex('register_vector_space:' || p_space);

    SELECT e.model, vector_dims(e.embedding) AS dims, count(*) AS n INTO other
    FROM embeddings e
    WHERE e.space = p_space AND (e.model <> p_model OR vector_dims(e.embedding) <> p_dims)
    GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1;
    IF FOUND THEN
        IF NOT p_reset THEN
            RAISE EXCEPTION 'the % space holds % vectors of model % (% dimensions), not of % (% dimensions)',
                p_space, other.n, other.model, other.dims, p_model, p_dims
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('run `semsql worker --reset-space %s` to delete them and embed '
                                    'every asset again, or set SEMSQL_MODEL_%s=%s',
                                    p_space, upper(stage_name), other.model);
        END IF;
        WITH gone AS (
            DELETE FROM embeddings e
            WHERE e.space = p_space AND (e.model <> p_model OR vector_dims(e.embedding) <> p_dims)
            RETURNING e.asset_id, vector_dims(e.embedding) <> p_dims AS resized)
        SELECT array_agg(asset_id), bool_or(resized) INTO dropped, other_dims FROM gone;
        PERFORM requeue_tasks(dropped, ARRAY[stage_name]);
        outcome := format('reset: %s vectors of other models deleted and queued again',
                          cardinality(dropped));
    END IF;
    IF p_space = 'image' THEN
        PERFORM register_frame_vectors(p_model, p_dims, p_reset);
    END IF;
    -- Cached query vectors of another model are of no use to searches in this space.
    DELETE FROM query_embeddings q
    WHERE q.space = p_space AND q.model IS DISTINCT FROM p_model AND q.model IS NOT NULL;

    INSERT INTO vector_spaces AS v (space, model, dims) VALUES (p_space, p_model, p_dims)
    ON CONFLICT (space) DO UPDATE SET model = EXCLUDED.model, dims = EXCLUDED.dims,
                                      updated_at = now()
        WHERE (v.model, v.dims) IS DISTINCT FROM (EXCLUDED.model, EXCLUDED.dims);
    IF FOUND AND outcome = 'unchanged' THEN
        outcome := 'registered';
    END IF;

    SELECT i.indexdef INTO definition FROM pg_indexes i
    WHERE i.schemaname = 'semsql' AND i.indexname = index_name;
    IF definition IS NOT NULL AND position(format('halfvec(%s)', p_dims) IN definition) = 0 THEN
        EXECUTE format('DROP INDEX semsql.%I', index_name);
        definition := NULL;
    END IF;
    IF definition IS NULL AND other_dims THEN
        -- CREATE INDEX would still read the rows this transaction deleted, of the old size.
        outcome := outcome || '; call again to build the index';
    ELSIF definition IS NULL AND EXISTS (SELECT FROM vector_spaces v WHERE v.space = p_space
                                         AND v.index_deferred_since IS NOT NULL) THEN
        outcome := outcome || ', index deferred until the backlog is written';
    ELSIF definition IS NULL THEN
        EXECUTE vector_index_sql(p_space, p_dims);
        outcome := outcome || ', index built';
    END IF;
    RETURN outcome;
END
$$;
COMMENT ON FUNCTION semsql.register_vector_space(text, text, integer, boolean) IS
    'Records the model and dimension of a vector space and builds its HNSW index on embedding::halfvec(dims); '
    'refuses when vectors of another model are stored, unless p_reset deletes them and queues their assets again '
    '(when that changes the dimension, the index is built by the next call).';

-- Status -----------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW semsql.queue_status AS
SELECT s.name AS stage,
       s.position,
       s.enabled,
       count(t.id) FILTER (WHERE t.status = 'pending') AS pending,
       count(t.id) FILTER (WHERE t.status = 'pending' AND t.next_attempt_at > now()) AS retry_waiting,
       count(t.id) FILTER (WHERE t.status = 'running') AS running,
       count(t.id) FILTER (WHERE t.status = 'done') AS done,
       count(t.id) FILTER (WHERE t.status = 'failed') AS failed,
       min(t.created_at) FILTER (WHERE t.status = 'pending') AS oldest_pending_at,
       max(t.finished_at) AS last_finished_at,
       (SELECT count(*) FROM semsql.live_workers() w WHERE s.name = ANY (w.stages)) AS workers,
       coalesce(sum(t.lost_leases) FILTER (WHERE t.status IN ('pending', 'running')), 0)
           AS lost_leases,
       count(t.id) FILTER (WHERE t.status = 'waiting') AS waiting,
       u.reason AS unavailable,
       u.fix AS unavailable_fix,
       u.reported_at AS unavailable_since
FROM semsql.stages s
LEFT JOIN semsql.tasks t ON t.stage = s.name
LEFT JOIN semsql.unavailable_stages u ON u.stage = s.name
GROUP BY s.name, s.position, s.enabled, u.reason, u.fix, u.reported_at
ORDER BY s.position;
COMMENT ON VIEW semsql.queue_status IS
    'Per stage: tasks pending (retry_waiting of them in backoff), running, done and failed, the '
    'live workers running it, and how often its unfinished tasks were taken back from workers '
    'that died holding them (lost_leases; a file that crashes its worker keeps raising it); '
    'and, for a stage whose model is not available, why (unavailable), how to fix it, and how '
    'many tasks wait for it.';

CREATE OR REPLACE VIEW semsql.failed_tasks AS
SELECT t.id AS task_id, t.asset_id, a.uri, a.collection, t.stage, t.attempts,
       t.last_error AS error, t.finished_at
FROM semsql.tasks t
JOIN semsql.assets a ON a.id = t.asset_id
WHERE t.status = 'failed';
COMMENT ON VIEW semsql.failed_tasks IS
    'Tasks that failed for good, with their error; `semsql worker --retry-failed` queues them again.';

CREATE OR REPLACE VIEW semsql.worker_status AS
SELECT w.name, w.host, w.pid, w.device, w.stages, w.query_spaces, w.problems, w.started_at,
       w.heartbeat_at,
       EXISTS (SELECT 1 FROM semsql.live_workers() l WHERE l.name = w.name) AS alive
FROM semsql.workers w;
COMMENT ON VIEW semsql.worker_status IS
    'Registered workers: what they run, what they cannot (problems), and whether their connection is alive.';

-- semsql.embed_text: a vector for a text, from the worker, inside SQL -----------------------------
--
-- embed_text runs as its owner (SECURITY DEFINER): it reads the loopback login, which its
-- callers may not, to open a second connection to this database as that login. There,
-- request_query_embedding files the request and commits it (so that a running worker sees it
-- while the caller's transaction is still open), and await_query_embedding waits for the answer
-- (which the caller's transaction could not see at every isolation level).
--
-- The caller must never send SQL of its own through that connection, even by cancelling at the
-- right moment. Where the caller may not run dblink's functions at all (semsql revokes them
-- from PUBLIC: migration 0028), the connection is kept open for the session under a name
-- (semsql.loopback_connection), which saves the login and a cold backend on every cache miss.
-- Where it may, each call opens a connection of its own and closes it again, never named.
--
-- These functions and every function they reach pin search_path to pg_catalog, pg_temp and
-- name every relation and semsql function with its schema: with pg_temp last, a caller's
-- temporary table or view cannot stand in for semsql's, and pg_temp is never searched for
-- functions or operators. Unqualified calls are built-ins of pg_catalog.

CREATE OR REPLACE FUNCTION semsql.query_text_digest(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(convert_to(p_text, 'UTF8')), 'hex');
$$;
COMMENT ON FUNCTION semsql.query_text_digest(text) IS
    'The key of a text in semsql.query_embeddings: the hex SHA-256 of its UTF-8 bytes.';

CREATE OR REPLACE FUNCTION semsql.max_query_text_length() RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- MiniLM reads 256 tokens and CLIP 77: ten thousand characters is far beyond either.
    SELECT 10000;
$$;
COMMENT ON FUNCTION semsql.max_query_text_length() IS
    'The longest text (in characters) that semsql.embed_text embeds and caches.';

CREATE OR REPLACE FUNCTION semsql.max_waiting_queries() RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A worker answers them in batches of 64 in a few tens of milliseconds; one role cannot
    -- push the others' texts further back than that.
    SELECT 100;
$$;
COMMENT ON FUNCTION semsql.max_waiting_queries() IS
    'How many texts one role may have waiting for a worker''s answer at once.';

CREATE OR REPLACE FUNCTION semsql.check_query_text(p_space text, p_text text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF semsql.vector_space_stage(p_space) IS NULL THEN
        RAISE EXCEPTION 'unknown vector space %: one of %', coalesce(p_space, 'NULL'),
            (SELECT string_agg(s.vector_space, ', ' ORDER BY s.position) FROM semsql.stages s)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_text) > semsql.max_query_text_length() THEN
        RAISE EXCEPTION 'the query text is % characters long; a query text has at most %',
            length(p_text), semsql.max_query_text_length()
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'a text model reads a few hundred words: pass the part that matters';
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.check_query_text(text, text) IS
    'Raises a clear error for an unknown vector space or a text longer than max_query_text_length().';

CREATE OR REPLACE PROCEDURE semsql.request_query_embedding(p_space text, p_text text, p_role text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    waiting integer;
BEGIN
    -- This runs on a connection opened for it, where each relation and function it touches
    -- costs catalog look-ups first: embed_text and embed_texts have checked the space and the
    -- text (check_query_text) before, so only the length is checked again here (and the table
    -- takes no other space).
    IF length(p_text) > semsql.max_query_text_length() THEN
        RAISE EXCEPTION 'a query text has at most % characters', semsql.max_query_text_length()
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    SELECT count(*) INTO waiting FROM semsql.query_embeddings q
    WHERE q.requested_by = p_role AND q.embedding IS NULL AND q.error IS NULL;
    IF waiting >= semsql.max_waiting_queries() THEN
        RAISE EXCEPTION '% texts of % wait for `semsql worker` already', waiting, p_role
            USING ERRCODE = 'configuration_limit_exceeded',
                  HINT = 'try again once they are answered';
    END IF;
    INSERT INTO semsql.query_embeddings AS q (space, requested_by, text_sha256, text)
    VALUES (p_space, p_role, semsql.query_text_digest(p_text), p_text)
    ON CONFLICT (space, requested_by, text_sha256) DO UPDATE
        SET error = NULL, requested_at = now()
        WHERE q.error IS NOT NULL;
    IF FOUND THEN
        PERFORM semsql.notify('semsql_embed');
    END IF;
END
$$;
COMMENT ON PROCEDURE semsql.request_query_embedding(text, text, text) IS
    'Run by embed_text on its own connection: files p_role''s request for a text''s vector in a space '
    '(a failed one is asked again), at most max_waiting_queries() waiting per role.';

CREATE OR REPLACE FUNCTION semsql.await_query_embedding(
    p_space text, p_role text, p_digest text, p_wait interval
) RETURNS TABLE (embedding text, error text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    answer record;
    deadline timestamptz := clock_timestamp() + p_wait;
    pause double precision := 0.0002;
    left_ms bigint;
BEGIN
    LOOP
        -- READ COMMITTED (the connection's setting): each look sees what the worker committed.
        SELECT q.embedding::text AS embedding, q.error INTO answer FROM semsql.query_embeddings q
        WHERE q.space = p_space AND q.requested_by = p_role AND q.text_sha256 = p_digest;
        IF answer.embedding IS NOT NULL OR answer.error IS NOT NULL THEN
            RETURN QUERY SELECT answer.embedding, answer.error;
            RETURN;
        END IF;
        left_ms := floor(extract(epoch FROM deadline - clock_timestamp()) * 1000)::bigint;
        EXIT WHEN left_ms <= 0;
        -- A worker holds its requests' rows FOR UPDATE from taking them until its answers
        -- commit (embedder/query_embeddings.py). FOR KEY SHARE waits on that lock, so the
        -- answer is seen the moment it commits; it never keeps a worker from taking a row (it
        -- takes them FOR NO KEY UPDATE SKIP LOCKED, which KEY SHARE does not conflict with),
        -- and the subtransaction's end gives it up at once.
        BEGIN
            PERFORM set_config('lock_timeout', left_ms || 'ms', true);
            PERFORM 1 FROM semsql.query_embeddings q
            WHERE q.space = p_space AND q.requested_by = p_role AND q.text_sha256 = p_digest
            FOR KEY SHARE;
            RAISE EXCEPTION 'waited';  -- leaving the subtransaction this way undoes the lock
        EXCEPTION WHEN raise_exception OR lock_not_available THEN
            NULL;
        END;
        SELECT q.embedding::text AS embedding, q.error INTO answer FROM semsql.query_embeddings q
        WHERE q.space = p_space AND q.requested_by = p_role AND q.text_sha256 = p_digest;
        IF answer.embedding IS NOT NULL OR answer.error IS NOT NULL THEN
            RETURN QUERY SELECT answer.embedding, answer.error;
            RETURN;
        END IF;
        EXIT WHEN clock_timestamp() >= deadline;
        -- Not taken by a worker yet (or its worker went away): look again soon. Once a worker
        -- holds the row, the lock above is the wait, so a pause only has to be shorter than a
        -- worker's embedding takes.
        PERFORM pg_sleep(least(pause, extract(epoch FROM deadline - clock_timestamp())));
        pause := least(pause * 2, 0.004);
    END LOOP;
    PERFORM semsql.require_query_worker(p_space);  -- nobody left to answer: say so now
    RETURN QUERY SELECT NULL::text, NULL::text;
END
$$;
COMMENT ON FUNCTION semsql.await_query_embedding(text, text, text, interval) IS
    'Run by embed_text on its own connection: waits up to p_wait for the answer to a request '
    '(on the row lock of the worker answering it, else looking again every few milliseconds); '
    'then NULLs, or an error when no live worker is left to give it.';

CREATE OR REPLACE FUNCTION semsql.trim_query_cache(
    p_max_rows integer DEFAULT 50000, p_max_age interval DEFAULT '30 days'
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    -- The newest p_max_rows rows stay, and so do requests that may still be waited for (an
    -- embed_text call waits ten minutes at most).
    DELETE FROM query_embeddings q
    WHERE (q.embedding IS NOT NULL OR q.error IS NOT NULL
           OR q.requested_at < now() - interval '1 hour')
      AND (q.requested_at < now() - p_max_age
           OR q.requested_at <= (SELECT r.requested_at FROM query_embeddings r
                                 ORDER BY r.requested_at DESC OFFSET p_max_rows LIMIT 1));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION semsql.trim_query_cache(integer, interval) IS
    'Evicts cached query vectors asked for more than p_max_age ago, and the oldest beyond '
    'p_max_rows (requests younger than an hour that are still waiting stay); returns how many. '
    'Each worker calls it on its heartbeat; an evicted text is embedded again when next asked for.';

CREATE OR REPLACE FUNCTION semsql.ensure_embed_loopback() RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    login loopback_login%ROWTYPE;
    v_role text;
    v_secret text;
    -- A session that missed the cache in the last minute keeps one connection of this login
    -- (one call, where dblink is not private): at most one per caller's own, so half the
    -- server's max_connections; a flood meets this limit, not the server's.
    v_limit integer := greatest(4, least(200, current_setting('max_connections')::integer / 2));
BEGIN
    SELECT * INTO login FROM loopback_login;
    v_role := coalesce(login.role_name, 'semsql_embed_' || left(md5(current_database()), 12));
    -- 244 random bits (gen_random_uuid draws from the server's strong random source).
    v_secret := coalesce(login.password,
                         encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text,
                                                  'UTF8')), 'hex'));
    BEGIN
        -- embed_text logs in once per call. SCRAM's key stretching (4096 rounds by default,
        -- about 5 ms a login here) protects guessable passwords; this one is random.
        IF current_setting('scram_iterations', true) IS NOT NULL THEN  -- PostgreSQL 16+
            PERFORM set_config('scram_iterations', '1', true);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('CREATE ROLE %I', v_role);
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN NOINHERIT CONNECTION LIMIT %s PASSWORD %L',
                       v_role, v_limit, v_secret);
    EXCEPTION WHEN insufficient_privilege THEN
        IF login.role_name IS NULL
           OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role AND rolcanlogin) THEN
            RAISE NOTICE 'semsql.embed_text is not set up: % (run `semsql init` as a role with '
                         'CREATEROLE once)', SQLERRM;
            RETURN NULL;
        END IF;  -- made by an earlier init: it stays as it is
    END;
    INSERT INTO loopback_login (role_name, password) VALUES (v_role, v_secret)
    ON CONFLICT (singleton) DO UPDATE
        SET role_name = EXCLUDED.role_name, password = EXCLUDED.password;
    EXECUTE format('GRANT USAGE ON SCHEMA semsql TO %I', v_role);
    EXECUTE format('GRANT EXECUTE ON ROUTINE semsql.request_query_embedding(text, text, text), '
                   'semsql.await_query_embedding(text, text, text, interval) TO %I', v_role);
    RETURN v_role;
END
$$;
COMMENT ON FUNCTION semsql.ensure_embed_loopback() IS
    'Creates (once per database) the login role embed_text connects as, allowed only to file '
    'requests and wait for their answers; returns its name.';

SELECT semsql.ensure_embed_loopback();

CREATE OR REPLACE FUNCTION semsql.quote_conninfo(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '''' || replace(replace(p_value, E'\\', E'\\\\'), '''', E'\\''') || '''';
$$;
COMMENT ON FUNCTION semsql.quote_conninfo(text) IS
    'A value quoted for a libpq key=value connection string.';

CREATE OR REPLACE FUNCTION semsql.embed_loopback_conninfo() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    login semsql.loopback_login%ROWTYPE;
    listen text := current_setting('listen_addresses');
    v_host text;
BEGIN
    SELECT * INTO login FROM semsql.loopback_login;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'semsql.embed_text is not set up in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run `semsql init` once as a role that may create roles (CREATEROLE)';
    END IF;
    v_host := coalesce(login.host, CASE
        WHEN listen = '' THEN btrim(split_part(current_setting('unix_socket_directories'), ',', 1))
        WHEN listen ~ '(^|,)\s*(\*|localhost|127\.0\.0\.1|0\.0\.0\.0)\s*(,|$)' THEN '127.0.0.1'
        WHEN listen ~ '(^|,)\s*(::1|::)\s*(,|$)' THEN '::1'
        ELSE btrim(split_part(listen, ',', 1)) END);
    -- The session there: no temporary objects of anyone's on its path; READ COMMITTED, so that
    -- the wait sees the answer; commits that do not wait for the disk (a request lost in a
    -- crash is only asked again); and it ends soon after embed_text stops waiting for it, or
    -- (a session's kept connection) after a minute unused.
    RETURN format('host=%s port=%s dbname=%s user=%s password=%s application_name=%s '
                  'connect_timeout=5 options=%s',
        semsql.quote_conninfo(v_host), coalesce(login.port, current_setting('port')::integer),
        semsql.quote_conninfo(current_database()), semsql.quote_conninfo(login.role_name),
        semsql.quote_conninfo(login.password), 'semsql_embed_text',
        semsql.quote_conninfo('-c search_path=pg_catalog,pg_temp '
                              '-c default_transaction_isolation=read\ committed '
                              '-c synchronous_commit=off '
                              '-c client_connection_check_interval=200 '
                              '-c idle_session_timeout=60s'));
END
$$;
COMMENT ON FUNCTION semsql.embed_loopback_conninfo() IS
    'The connection string of embed_text''s own connection to this database, as the loopback login.';

CREATE OR REPLACE FUNCTION semsql.loopback_is_private() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- No dblink function may be run by PUBLIC or by a role the caller is a member of (and so
    -- could SET ROLE to): then only semsql's own functions reach a connection of the session.
    -- A superuser can reach everything anyway.
    SELECT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user), false)
        OR NOT EXISTS (
            SELECT FROM pg_depend d
            JOIN pg_proc p ON p.oid = d.objid
            CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
            WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
              AND d.refclassid = 'pg_extension'::regclass
              AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'dblink')
              AND a.privilege_type = 'EXECUTE'
              AND (a.grantee = 0 OR pg_has_role(session_user, a.grantee, 'MEMBER')));
$$;
COMMENT ON FUNCTION semsql.loopback_is_private() IS
    'Whether the caller can run none of dblink''s functions (nor can any role it may become), '
    'so that embed_text may keep its loopback connection open for the session.';

CREATE OR REPLACE FUNCTION semsql.loopback_connection(p_fresh boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kept constant text := 'semsql_embed_text';
BEGIN
    IF NOT semsql.loopback_is_private() THEN
        RETURN semsql.embed_loopback_conninfo();  -- a connection of the dblink call's own
    END IF;
    IF kept = ANY (coalesce(public.dblink_get_connections(), '{}')) THEN
        -- Busy: a call cancelled while it waited left its statement running there.
        IF NOT p_fresh AND public.dblink_is_busy(kept) = 0 THEN
            RETURN kept;
        END IF;
        PERFORM public.dblink_disconnect(kept);
    END IF;
    PERFORM public.dblink_connect(kept, semsql.embed_loopback_conninfo());
    RETURN kept;
END
$$;
COMMENT ON FUNCTION semsql.loopback_connection(boolean) IS
    'What embed_text passes dblink: the name of the session''s kept loopback connection (opened, '
    'or opened again when p_fresh or left busy) where the caller cannot reach it, else the '
    'connection string of a connection for that one call.';

CREATE OR REPLACE FUNCTION semsql.loopback_rows(p_sql text) RETURNS SETOF text[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    connection text;
    detail text;
BEGIN
    FOR attempt IN 1..2 LOOP
        BEGIN
            connection := semsql.loopback_connection(p_fresh => attempt > 1);
            RETURN QUERY SELECT r.v FROM public.dblink(connection, p_sql) AS r(v text[]);
            RETURN;
        EXCEPTION
            WHEN sqlclient_unable_to_establish_sqlconnection THEN
                GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
                RAISE EXCEPTION 'semsql.embed_text could not open its connection to this '
                                'database: %', btrim(detail)
                    USING ERRCODE = 'sqlclient_unable_to_establish_sqlconnection',
                          HINT = 'too many embed_text calls may wait at once, or its login has '
                                 'changed (`semsql init` sets it up again)';
            WHEN OTHERS THEN
                -- A kept connection may have ended meanwhile (idle_session_timeout, a server
                -- restart): once more, on a new one. Anything else fails again there.
                IF attempt > 1 OR connection <> 'semsql_embed_text' THEN
                    RAISE;
                END IF;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION semsql.loopback_rows(text) IS
    'Runs p_sql (statements whose last returns one text[] column) on embed_text''s loopback '
    'connection (semsql.loopback_connection), on a new one once if a kept one has ended.';

CREATE OR REPLACE FUNCTION semsql.require_query_worker(p_space text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stage_name text := semsql.vector_space_stage(p_space);
    v_problems text;
BEGIN
    -- A fresh look at the server's backends: a transaction otherwise keeps the one it took
    -- first, and would not see that the worker it waits for has died.
    PERFORM pg_stat_clear_snapshot();
    IF EXISTS (SELECT 1 FROM semsql.live_workers() w WHERE p_space = ANY (w.query_spaces)) THEN
        RETURN;
    END IF;
    SELECT string_agg(format('%s: %s', w.name, w.problems ->> stage_name), '; ') INTO v_problems
    FROM semsql.live_workers() w WHERE w.problems ? stage_name;
    RAISE EXCEPTION 'no `semsql worker` is running that embeds text for the % space', p_space
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = coalesce('the running workers cannot: ' || v_problems,
                              'start one with `semsql worker` (it answers semsql.embed_text), '
                              'or search with a vector instead of text');
END
$$;
COMMENT ON FUNCTION semsql.require_query_worker(text) IS
    'Raises a clear error unless a live worker answers embed_text requests for this space.';

CREATE OR REPLACE FUNCTION semsql.embed_text(
    query text, space text DEFAULT 'text', timeout interval DEFAULT '5 seconds'
) RETURNS vector
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asker text := session_user;
    digest text := semsql.query_text_digest(query);
    deadline timestamptz := clock_timestamp() + timeout;
    cached text;
    answer record;
    request text;
BEGIN
    IF timeout < interval '0' OR timeout > interval '10 minutes' THEN
        RAISE EXCEPTION 'timeout must be between 0 and 10 minutes, not %', timeout
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Only a text that passed check_query_text is in the cache: a hit needs no other look-up.
    SELECT q.embedding::text INTO cached FROM semsql.query_embeddings q
    WHERE q.space = embed_text.space AND q.requested_by = asker AND q.text_sha256 = digest
      AND q.embedding IS NOT NULL;
    IF cached IS NOT NULL THEN
        RETURN cached;  -- PL/pgSQL turns the text into the vector it returns
    END IF;
    PERFORM semsql.check_query_text(embed_text.space, query);
    PERFORM semsql.require_query_worker(embed_text.space);
    -- The first call files the request; each waits a quarter of a second at most, so that a
    -- cancel (which a dblink call in progress holds back) takes effect soon.
    request := format('CALL semsql.request_query_embedding(%L, %L, %L); COMMIT; ',
                      embed_text.space, query, asker);
    LOOP
        SELECT r[1] AS embedding, r[2] AS error INTO answer FROM semsql.loopback_rows(request
            || format('SELECT ARRAY[a.embedding, a.error] '
                      'FROM semsql.await_query_embedding(%L, %L, %L, %L) AS a',
                      embed_text.space, asker, digest,
                      greatest(interval '0', least(interval '0.25 seconds',
                                                   deadline - clock_timestamp())))) AS r;
        request := '';
        IF answer.error IS NOT NULL THEN
            RAISE EXCEPTION 'semsql worker could not embed this text in the % space: %',
                embed_text.space, answer.error;
        END IF;
        EXIT WHEN answer.embedding IS NOT NULL;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'no answer from `semsql worker` within % (space %)',
                timeout, embed_text.space
                USING HINT = 'the worker may be busy or loading its models: try again, or pass '
                             'a longer timeout => interval';
        END IF;
    END LOOP;
    RETURN answer.embedding;
END
$$;
COMMENT ON FUNCTION semsql.embed_text(text, text, interval) IS
    'The vector of a text in a space (text: asset documents, image: CLIP), from the caller''s '
    'cache or asked of a running `semsql worker` (waiting at most timeout, up to 10 minutes).';
