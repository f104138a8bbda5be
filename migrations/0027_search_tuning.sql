-- 0027: the hnsw.ef_search that semsql.search uses in each vector space, measured on the
-- library itself by semsql.calibrate_ef_search (sql/042_search_plan.sql): the least ef_search
-- at which HNSW finds target_recall of the k nearest vectors that an exact scan finds, over a
-- sample of queries.

CREATE TABLE semsql.search_tuning (
    space            text PRIMARY KEY REFERENCES semsql.vector_spaces (space) ON DELETE CASCADE,
    ef_search        integer NOT NULL CHECK (ef_search BETWEEN 1 AND 1000),
    k                integer NOT NULL CHECK (k BETWEEN 1 AND 1000),
    target_recall    real NOT NULL CHECK (target_recall > 0 AND target_recall <= 1),
    measured_recall  real NOT NULL,
    sample           integer NOT NULL,
    vectors          bigint NOT NULL,
    calibrated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE semsql.search_tuning IS
    'Per vector space, the hnsw.ef_search that semsql.calibrate_ef_search measured: the least '
    'of the values tried at which HNSW found target_recall (measured_recall) of the k nearest '
    'that an exact scan finds, over sample queries, in a space of vectors vectors. '
    'semsql.search uses it, scaled to k + offset, unless its own candidates are more.';

