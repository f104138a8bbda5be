-- Roles, applied last on every `semsql init` so that its grants cover everything defined before.
--
--   semsql_analyst  reads every table and view (not the login of embed_text, not other people's
--                   cached queries, not the writers' locks), searches (semsql.search, similar,
--                   duplicates, embed_text, face search ...). Functions run with the caller's
--                   rights, so an analyst can call any of them but change nothing; the
--                   SECURITY DEFINER functions (embed_text, and request_query_embedding and
--                   await_query_embedding, which only its own login may call) are the
--                   exception, and pin search_path = pg_catalog, pg_temp.
--   semsql_worker   the embedder daemon: reads and writes the tables, runs every function.
--
-- Both are NOLOGIN groups: GRANT semsql_analyst TO a login role. Roles are cluster-wide; they
-- are made once and shared by every semsql database of the server. Without CREATEROLE (a
-- managed server's database owner) init goes on with a notice, and grants to whichever of the
-- roles exist (a DBA can create them and run init again).

-- No function of semsql is callable by every role: only by those granted below, and the owner.
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA semsql FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA semsql REVOKE EXECUTE ON ROUTINES FROM PUBLIC;

DO $$
DECLARE
    wanted text;
BEGIN
    FOREACH wanted IN ARRAY ARRAY['semsql_analyst', 'semsql_worker'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = wanted);
        BEGIN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', wanted);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another `semsql init` on this server made it meanwhile
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role % was not created: % (a role with CREATEROLE can run '
                             '`CREATE ROLE % NOLOGIN`, then `semsql init` again)',
                             wanted, SQLERRM, wanted;
        END;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'semsql_analyst') THEN
        GRANT USAGE ON SCHEMA semsql TO semsql_analyst;
        GRANT SELECT ON ALL TABLES IN SCHEMA semsql TO semsql_analyst;
        -- Not the loopback login, not other people's cached queries, and no lock of the
        -- writers' (semsql.mutexes): a lock an analyst could take would let it stall them.
        REVOKE ALL ON semsql.loopback_login, semsql.query_embeddings, semsql.mutexes
            FROM semsql_analyst;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA semsql TO semsql_analyst;
        -- embed_text's own plumbing: its loopback connection and what it runs there.
        REVOKE EXECUTE ON ROUTINE semsql.request_query_embedding(text, text, text),
                                   semsql.await_query_embedding(text, text, text, interval),
                                   semsql.embed_loopback_conninfo(),
                                   semsql.loopback_connection(boolean),
                                   semsql.loopback_rows(text)
            FROM semsql_analyst;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'semsql_worker') THEN
        GRANT USAGE ON SCHEMA semsql TO semsql_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA semsql TO semsql_worker;
        REVOKE ALL ON semsql.loopback_login FROM semsql_worker;
        REVOKE INSERT, UPDATE, DELETE ON semsql.schema_migrations FROM semsql_worker;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA semsql TO semsql_worker;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA semsql TO semsql_worker;
        REVOKE EXECUTE ON ROUTINE semsql.request_query_embedding(text, text, text),
                                   semsql.await_query_embedding(text, text, text, interval),
                                   semsql.embed_loopback_conninfo(),
                                   semsql.loopback_connection(boolean),
                                   semsql.loopback_rows(text)
            FROM semsql_worker;
    END IF;
END
$$;
