-- 0007: what the hardening of the trust boundaries needs in the tables.

-- The folder an asset was found under: the worker opens its file only while the path, links
-- resolved at read time, stays inside it. NULL for URLs (and for assets ingested before 0007,
-- where the file's own folder is taken).
ALTER TABLE semsql.assets ADD COLUMN root text;
COMMENT ON COLUMN semsql.assets.root IS
    'The folder the file was found under (the folder given to `semsql ingest`, a manifest''s '
    'folder or --root); the worker refuses to read a path that leaves it. NULL for URLs.';

-- A lease taken back from a worker that died is not an attempt that failed.
ALTER TABLE semsql.tasks ADD COLUMN lost_leases integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN semsql.tasks.attempts IS
    'How many times processing the task raised an error; a lease lost with its worker does not count.';
COMMENT ON COLUMN semsql.tasks.lost_leases IS
    'How many times the task was taken back from a worker that died or hung while holding it; '
    'a task that keeps killing its worker shows here (and in semsql.queue_status).';

-- Locks that only roles with write rights can take: advisory locks are open to every role,
-- so an analyst could hold one and stall the queue. Row locks (FOR UPDATE, FOR SHARE) need the
-- UPDATE privilege, and analysts are not even granted SELECT on this table.
CREATE TABLE semsql.mutexes (
    name  text PRIMARY KEY
);
REVOKE ALL ON semsql.mutexes FROM PUBLIC;
INSERT INTO semsql.mutexes (name) VALUES
    ('init'), ('settle_assets'), ('recognition'), ('face_clusters'),
    ('register_vector_space:image'), ('register_vector_space:text');
COMMENT ON TABLE semsql.mutexes IS
    'One row per lock that semsql''s writers take in turns (semsql.take_mutex): row locks, which '
    'need write rights, where advisory locks would let any role stall the queue.';

-- Who builds a deferred index: the build's connection, told from a later one with its pid.
ALTER TABLE semsql.vector_spaces ADD COLUMN index_build_backend integer,
                                 ADD COLUMN index_build_backend_start timestamptz;
COMMENT ON COLUMN semsql.vector_spaces.index_build_backend IS
    'pg_backend_pid() of the connection building the deferred index; the build counts as running '
    'while that backend (with index_build_backend_start) is alive.';

-- The query cache is bounded: the rows asked for longest ago are evicted first (sql/030).
CREATE INDEX query_embeddings_requested ON semsql.query_embeddings (requested_at);

-- Each role's cached query vectors are its own. A cache shared by every role tells one analyst
-- what another searched for: a text is answered from the cache at once (or, with no worker
-- running, at all) only if somebody asked for it. Older rows belong to no role ('') and are
-- evicted in time.
ALTER TABLE semsql.query_embeddings
    ADD COLUMN requested_by text NOT NULL DEFAULT '',
    DROP CONSTRAINT query_embeddings_pkey;
ALTER TABLE semsql.query_embeddings
    ALTER COLUMN requested_by SET DEFAULT session_user,
    ADD PRIMARY KEY (space, requested_by, text_sha256);
COMMENT ON COLUMN semsql.query_embeddings.requested_by IS
    'The login (session_user) that asked for this text; only its own calls are answered from '
    'this row.';

-- claim_tasks returns the asset's root and no longer takes p_max_attempts (sql/030 makes it).
DROP FUNCTION IF EXISTS semsql.claim_tasks(text, text, integer, interval, integer);
-- embed_text makes a connection of its own for each request (embed_loopback_conninfo), and
-- request_query_embedding takes the asking role.
DROP FUNCTION IF EXISTS semsql.embed_loopback_connection();
DROP FUNCTION IF EXISTS semsql.request_query_embedding(text, text, boolean);
