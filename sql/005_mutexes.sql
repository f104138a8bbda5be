-- Locks that semsql's writers take in turns, and whether a backend is still alive.
--
-- Advisory locks are open to every role: an analyst holding semsql's key could stall every
-- worker. These are row locks on semsql.mutexes, which need the UPDATE privilege (analysts are
-- not even granted SELECT on it), so only roles that may write can take them.

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
