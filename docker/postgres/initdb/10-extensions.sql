-- Run once on first start, in $POSTGRES_DB. `semsql init` creates the same extensions if
-- missing, so a role without CREATE on the database can still be used afterwards.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
