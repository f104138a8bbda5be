-- 0006: a vector space can have its HNSW index dropped while a large backlog is written.
--
-- Adding one vector to an HNSW index costs about 1.5 to 2 ms of CPU here (distance
-- computations for the graph search and the neighbour updates), while writing it to the table
-- costs about 40 µs and a parallel bulk build of the whole index 0.2 to 0.3 ms per vector. For a backlog that is
-- large beside what a space holds, the worker drops the index, writes without it, and builds it
-- again once the backlog is written (sql/035_vector_index.sql).

ALTER TABLE semsql.vector_spaces ADD COLUMN index_deferred_since timestamptz;
COMMENT ON COLUMN semsql.vector_spaces.index_deferred_since IS
    'Set while the space''s HNSW index is dropped for a backlog of writes; a worker builds it '
    'again once the backlog is written. Searches in the space scan exactly meanwhile.';
