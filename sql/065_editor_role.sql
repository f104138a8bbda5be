-- The writer role of `semsql serve`, applied after 060_roles.sql on every `semsql init`.
--
--   semsql_editor  what the web pages and the HTTP API change: uploads (ingest jobs: assets,
--                  their stated facts, queued tasks), people edits (naming and splitting face
--                  clusters, renaming and merging people, the match threshold) and duplicate
--                  review (deleting asset rows). It reads what the analyst reads. It cannot
--                  change the schema's bookkeeping, the stage registry, the workers' own
--                  registrations and vector spaces, nor reach the loopback login.
--
-- A NOLOGIN group like the others: `semsql serve` acts as it with SET ROLE, so the server's
-- login must be a member (the database owner that ran init is, as superuser or creator).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'semsql_editor') THEN
        BEGIN
            CREATE ROLE semsql_editor NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another `semsql init` on this server made it meanwhile
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role semsql_editor was not created: % (a role with CREATEROLE '
                             'can run `CREATE ROLE semsql_editor NOLOGIN`, then `semsql init` '
                             'again)', SQLERRM;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'semsql_editor') THEN
        GRANT USAGE ON SCHEMA semsql TO semsql_editor;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA semsql TO semsql_editor;
        REVOKE ALL ON semsql.loopback_login, semsql.query_embeddings FROM semsql_editor;
        REVOKE INSERT, UPDATE, DELETE ON semsql.schema_migrations, semsql.stages,
                                         semsql.workers, semsql.vector_spaces,
                                         semsql.unavailable_stages
            FROM semsql_editor;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA semsql TO semsql_editor;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA semsql TO semsql_editor;
        REVOKE EXECUTE ON ROUTINE semsql.request_query_embedding(text, text, text),
                                   semsql.await_query_embedding(text, text, text, interval),
                                   semsql.embed_loopback_conninfo(),
                                   semsql.loopback_connection(boolean),
                                   semsql.loopback_rows(text)
            FROM semsql_editor;
        -- The server's login may act as each role it needs (SET ROLE); a no-op for a superuser.
        IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
            BEGIN
                EXECUTE pg_catalog.format('GRANT semsql_editor, semsql_analyst TO %I',
                                          current_user);
            EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
                RAISE NOTICE '% cannot act as semsql_editor and semsql_analyst: %; `semsql '
                             'serve` needs a DBA to GRANT them to it', current_user, SQLERRM;
            END;
        END IF;
    END IF;
END
$$;
