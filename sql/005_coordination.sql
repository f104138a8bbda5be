-- How semsql's sessions coordinate: locks that only writers can take, wake-up hints that never
-- fail a transaction, and whether a backend is still alive.
--
-- Advisory locks are open to every role: an analyst holding semsql's key could stall every
-- worker. take_mutex takes row locks on semsql.mutexes, which need the UPDATE privilege
-- (analysts are not even granted SELECT on it), so only roles that may write can take them.

CREATE OR REPLACE FUNCTION semsql.take_mutex(p_name text, p_exclusive boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOOP
        IF p_exclusive THEN
            PERFORM FROM semsql.mutexes m WHERE m.name = p_name FOR UPDATE;
        ELSE
            PERFORM FROM semsql.mutexes m WHERE m.name = p_name FOR SHARE;
        END IF;
        EXIT WHEN FOUND;
        INSERT INTO semsql.mutexes (name) VALUES (p_name) ON CONFLICT DO NOTHING;
    END LOOP;
END
$$;
COMMENT ON FUNCTION semsql.take_mutex(text, boolean) IS
    'Until commit: the lock of this name, exclusive or shared (a row lock on semsql.mutexes, '
    'which only roles with write rights can take).';

CREATE OR REPLACE FUNCTION semsql.backend_alive(p_pid integer, p_backend_start timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- backend_start tells a live backend from a new one that reuses a dead one's pid; it reads
    -- NULL to a role that may not see other roles' sessions.
    SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
                   WHERE a.pid = p_pid
                     AND (a.backend_start IS NULL OR a.backend_start = p_backend_start));
$$;
COMMENT ON FUNCTION semsql.backend_alive(integer, timestamptz) IS
    'Whether the server backend with this pid and start time is still running (as of the '
    'transaction''s view of pg_stat_activity; pg_stat_clear_snapshot() refreshes it).';

CREATE OR REPLACE FUNCTION semsql.holds_up_others() RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Only the backends that wait are asked whom they wait for.
    SELECT EXISTS (SELECT FROM pg_catalog.pg_locks w
                   WHERE NOT w.granted
                     AND pg_catalog.pg_backend_pid() = ANY (pg_catalog.pg_blocking_pids(w.pid)));
$$;
COMMENT ON FUNCTION semsql.holds_up_others() IS
    'Whether another backend waits for a lock this session''s transaction holds (an upload''s '
    'streamed ingest asks, to give way to an ingest of the same file).';

CREATE OR REPLACE FUNCTION semsql.notify(p_channel text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The NOTIFY queue is shared by every session of the server, and a session that LISTENs
    -- inside a transaction it keeps open holds it full: past half full, commits that notify
    -- fail. A wake-up is only a hint (workers poll too), so semsql sends none then.
    IF pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.notify(text) IS
    'Wakes the listeners of a channel at commit (a hint only), unless the server''s NOTIFY queue '
    'is over half full, when committing a notification could fail.';
