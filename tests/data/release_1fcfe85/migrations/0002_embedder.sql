-- 0002: what the embedder daemon needs besides the queue: the live workers, the cache of query
-- vectors that semsql.embed_text fills through them, and the login embed_text uses to reach
-- its own database.

ALTER TABLE semsql.tasks ADD COLUMN rerun boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN semsql.tasks.rerun IS
    'Set when the task''s inputs changed while it was running: it goes back to pending when it finishes.';

-- Claims look for one stage's pending tasks in due order.
CREATE INDEX tasks_claimable_by_stage ON semsql.tasks (stage, next_attempt_at, id)
    WHERE status = 'pending';

CREATE TABLE semsql.workers (
    name           text PRIMARY KEY,
    backend_pid    integer NOT NULL,
    backend_start  timestamptz NOT NULL,
    host           text NOT NULL,
    pid            integer NOT NULL,
    device         text,
    stages         text[] NOT NULL DEFAULT '{}',
    query_spaces   text[] NOT NULL DEFAULT '{}',
    problems       jsonb NOT NULL DEFAULT '{}',
    started_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE semsql.workers IS
    'Running `semsql worker` daemons; a row counts while its connection (backend_pid, backend_start) is alive.';
COMMENT ON COLUMN semsql.workers.stages IS 'The stages this worker runs.';
COMMENT ON COLUMN semsql.workers.query_spaces IS
    'The vector spaces for which this worker answers semsql.embed_text requests.';
COMMENT ON COLUMN semsql.workers.problems IS
    'Stage or space -> why this worker cannot serve it (a model that did not load, a space mismatch).';

CREATE TABLE semsql.query_embeddings (
    space         text NOT NULL CHECK (space IN ('image', 'text')),
    text_sha256   text NOT NULL CHECK (text_sha256 ~ '^[0-9a-f]{64}$'),
    text          text NOT NULL,
    model         text,
    embedding     vector,
    error         text,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    answered_at   timestamptz,
    PRIMARY KEY (space, text_sha256)
);
CREATE INDEX query_embeddings_unanswered ON semsql.query_embeddings (requested_at)
    WHERE embedding IS NULL AND error IS NULL;
COMMENT ON TABLE semsql.query_embeddings IS
    'Cache of query vectors by space and text: rows without embedding are requests for `semsql worker`.';

CREATE TABLE semsql.loopback_login (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    role_name  text NOT NULL,
    password   text NOT NULL,
    host       text,
    port       integer
);
REVOKE ALL ON semsql.loopback_login FROM PUBLIC;
COMMENT ON TABLE semsql.loopback_login IS
    'The login semsql.embed_text uses (through dblink) to file a request that commits at once. '
    'The role may only call semsql.request_query_embedding. host/port NULL: taken from the server''s settings.';
