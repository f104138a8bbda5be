-- 0028: dblink is semsql's plumbing, not every role's. With EXECUTE for PUBLIC (dblink's
-- default), any role could open connections from the database server to any host that takes a
-- password, and could reach the connections that semsql's functions open in its session. Once
-- only their owner runs dblink, semsql.embed_text keeps its loopback connection open for the
-- session (sql/030_worker.sql, semsql.loopback_is_private) instead of logging in on every cache
-- miss. A DBA who wants dblink for other roles can GRANT it back: embed_text then opens a
-- connection per call again, as before.
--
-- Only functions PUBLIC may run, and only where the role running this owns them (or is a
-- superuser): for any other role nothing changes, and embed_text goes on as before.

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_proc p ON p.oid = d.objid
        WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'e'
          AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
          AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'dblink')
          AND pg_catalog.pg_has_role(current_user, p.proowner, 'USAGE')
          AND EXISTS (SELECT FROM pg_catalog.aclexplode(coalesce(
                          p.proacl, pg_catalog.acldefault('f', p.proowner))) AS a
                      WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
    LOOP
        -- semsql's own functions run as the role that installs them: it keeps the right.
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', f, current_user);
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
