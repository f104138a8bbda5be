"""Attacks by real login roles in semsql_analyst and semsql_worker: becoming superuser through
semsql's SECURITY DEFINER functions, using embed_text's loopback connection, filling the query
cache, and stalling the workers with locks an analyst can take."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest
from psycopg import sql

from semsql import database, migrate

# Runs as whoever calls it. Inside a SECURITY DEFINER function that is the owner, a superuser
# here: it then makes the attacker a superuser and leaves a mark in the session.
EVIL = """
CREATE FUNCTION pg_temp.evil() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> session_user THEN
        PERFORM set_config('semsql_test.pwned', current_user, false);
        EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
    END IF;
    RETURN '[1,2,3]';
END $$"""

# The attack as it was reported against a30091e.
REPORTED_ATTACK = """
CREATE TEMP VIEW query_embeddings AS SELECT 'text'::text AS space,
    encode(sha256(convert_to('pwn', 'UTF8')), 'hex') AS text_sha256,
    pg_temp.evil()::vector AS embedding"""

# Catalog relations that the definer functions' code could read.
CATALOG_RELATIONS = ("pg_stat_activity", "pg_roles", "pg_settings", "pg_locks", "pg_index")


def shadow_everything(conn: psycopg.Connection) -> None:
    """A temporary view in place of every semsql and catalog relation, and a temporary function
    in place of every function name that semsql's definer functions call; each calls evil()."""
    relations = conn.execute(
        """SELECT c.relname,
                  string_agg(format('NULL::%%s AS %%I', format_type(a.atttypid, a.atttypmod),
                                    a.attname), ', ' ORDER BY a.attnum)
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
           WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v')
             AND (c.relnamespace = 'semsql'::regnamespace
                  OR (c.relnamespace = 'pg_catalog'::regnamespace AND c.relname = ANY (%s)))
           GROUP BY c.relname""",
        [list(CATALOG_RELATIONS)],
    ).fetchall()
    for name, columns in relations:
        if name == "query_embeddings":
            continue  # the reported attack's view stands there
        conn.execute(
            sql.SQL(
                "CREATE TEMP VIEW {} AS SELECT {} FROM (SELECT pg_temp.evil() AS e) x "
                "WHERE x.e IS NULL"
            ).format(sql.Identifier(name), sql.SQL(columns))
        )
    called = conn.execute(
        r"""SELECT DISTINCT m[1] FROM pg_proc p,
                  regexp_matches(p.prosrc, '([a-z_]+)\s*\(', 'g') AS m
           WHERE p.pronamespace = 'semsql'::regnamespace
             AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp']"""
    ).fetchall()
    for (name,) in called:
        for arguments in ("", "text", "text, text"):
            conn.execute(
                sql.SQL(
                    "CREATE FUNCTION pg_temp.{}({}) RETURNS text LANGUAGE sql "
                    "AS 'SELECT pg_temp.evil()'"
                ).format(sql.Identifier(name), sql.SQL(arguments))
            )


def assert_not_escalated(attacker: psycopg.Connection) -> None:
    mark = attacker.execute("SELECT current_setting('semsql_test.pwned', true)").fetchone()[0]
    superuser = attacker.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user"
    ).fetchone()[0]
    assert (mark or None, superuser) == (None, False)


@pytest.mark.parametrize("group", ["semsql_analyst", "semsql_worker"])
def test_temporary_objects_of_the_caller_never_run_with_the_owners_rights(
    login_as, query_worker, group
) -> None:
    attacker = login_as(group)
    attacker.execute(EVIL)
    attacker.execute(REPORTED_ATTACK)
    shadow_everything(attacker)
    assert attacker.execute("SELECT semsql.embed_text('pwn')::text").fetchone()[0].startswith("[")
    attacker.execute("SELECT semsql.embed_text('pwn')")  # now from the cache
    attacker.execute("SELECT semsql.embed_text('pwn', space => 'image')")
    hits = attacker.execute("SELECT count(*) FROM semsql.search('pwn', k => 3)").fetchone()[0]
    assert hits == 0  # no assets; the search ran through embed_text all the same
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        attacker.execute("SELECT semsql.embed_text(repeat('x', 10001))")
    assert_not_escalated(attacker)


def test_without_a_worker_the_definer_functions_do_not_reach_temporary_objects(login_as) -> None:
    attacker = login_as("semsql_analyst")
    attacker.execute(EVIL)
    attacker.execute(REPORTED_ATTACK)
    shadow_everything(attacker)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="semsql worker"):
        attacker.execute("SELECT semsql.embed_text('pwn')")
    assert_not_escalated(attacker)


KEPT_LOOPBACKS = """SELECT pid, backend_start, state FROM pg_stat_activity
    WHERE application_name = 'semsql_embed_text' AND datname = current_database()"""
DBLINK_FUNCTIONS = """SELECT d.objid::regprocedure::text FROM pg_depend d
    WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dblink')"""


WAITING_LOOPBACKS = """SELECT count(*) FROM pg_stat_activity
    WHERE application_name = 'semsql_embed_text' AND datname = current_database()
      AND state <> 'idle'"""


def no_loopbacks_left(db: psycopg.Connection) -> None:
    """Waits for the loopback sessions of callers that have gone (an earlier test's) to end."""
    deadline = time.monotonic() + 10
    while db.execute(KEPT_LOOPBACKS).fetchall() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.execute(KEPT_LOOPBACKS).fetchall() == []


def test_the_caller_can_run_no_dblink_function_and_so_never_reaches_the_loopback(
    login_as, query_worker, db
) -> None:
    """Migration 0028 revokes dblink from PUBLIC: the session keeps embed_text's connection
    (one login for many texts), and the caller has no function that could reach it."""
    no_loopbacks_left(db)
    analyst = login_as("semsql_analyst")
    analyst.execute("SELECT semsql.embed_text('a quiet lake')")
    [kept] = db.execute(KEPT_LOOPBACKS).fetchall()
    analyst.execute("SELECT semsql.embed_text('a loud river')")
    assert db.execute(KEPT_LOOPBACKS).fetchall()[0][:2] == kept[:2]  # the same session
    for function in [name for (name,) in db.execute(DBLINK_FUNCTIONS)]:
        assert not analyst.execute(
            "SELECT has_function_privilege(%s, 'EXECUTE')", [function]
        ).fetchone()[0], function
    for statement in (
        "SELECT public.dblink_get_connections()",
        "SELECT public.dblink_exec('semsql_embed_text', 'SELECT 1')",
        "SELECT * FROM public.dblink('semsql_embed_text', 'SELECT 1') AS r(x int)",
        "SELECT semsql.embed_loopback_conninfo()",
        "SELECT semsql.loopback_connection()",
        "SELECT * FROM semsql.loopback_rows('SELECT ARRAY[''x'']')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), analyst.transaction():
            analyst.execute(statement)
    analyst.close()
    no_loopbacks_left(db)  # the loopback session ends with the caller's


def test_where_public_may_run_dblink_the_callers_session_never_holds_the_loopback(
    login_as, query_worker, db
) -> None:
    functions = [name for (name,) in db.execute(DBLINK_FUNCTIONS)]
    for function in functions:
        db.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
    try:
        analyst = login_as("semsql_analyst")
        analyst.execute("SELECT semsql.embed_text('a quiet lake')")
        assert analyst.execute("SELECT public.dblink_get_connections()").fetchone()[0] is None
        with pytest.raises(psycopg.Error, match="connection"):
            analyst.execute("SELECT public.dblink_exec('SELECT 1')")  # nor as the unnamed one
        with pytest.raises(psycopg.errors.RaiseException, match="no answer"):
            analyst.execute("SELECT semsql.embed_text('a new text', timeout => '0 s')")
        assert analyst.execute("SELECT public.dblink_get_connections()").fetchone()[0] is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("SELECT semsql.embed_loopback_conninfo()")
    finally:
        for function in functions:
            db.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")


def test_a_role_the_caller_may_become_that_runs_dblink_keeps_the_loopback_per_call(
    login_as, query_worker, db
) -> None:
    """Not inherited (the caller must SET ROLE to use it), one dblink function is enough."""
    analyst = login_as("semsql_analyst")
    login = analyst.execute("SELECT session_user").fetchone()[0]
    helper = sql.Identifier(f"{login}_dblink")
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(helper))
    try:
        db.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION public.dblink_get_connections() TO {}").format(
                helper
            )
        )
        db.execute(
            sql.SQL("GRANT {} TO {} WITH INHERIT FALSE").format(helper, sql.Identifier(login))
        )
        assert not analyst.execute("SELECT semsql.loopback_is_private()").fetchone()[0]
        analyst.execute("SELECT semsql.embed_text('a quiet lake')")
        analyst.execute(sql.SQL("SET ROLE {}").format(helper))
        assert analyst.execute("SELECT public.dblink_get_connections()").fetchone()[0] is None
        analyst.execute("RESET ROLE")
    finally:
        db.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(helper))


@pytest.mark.parametrize(
    "timeouts",
    [
        pytest.param(range(1, 60, 28), id="three-moments"),
        pytest.param(range(1, 60, 4), id="sweep", marks=pytest.mark.slow),
    ],
)
def test_cancelling_embed_text_at_any_moment_leaves_one_idle_loopback_and_the_next_call_works(
    login_as, silent_worker, db, timeouts: range
) -> None:
    """As the reported attack: statement timeouts swept across the whole call, so that the
    cancel lands anywhere, connecting included (the default run tries three moments)."""
    no_loopbacks_left(db)
    analyst = login_as("semsql_analyst")
    for millis in timeouts:
        analyst.execute(f"SET statement_timeout = '{millis}ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            analyst.execute("SELECT semsql.embed_text(%s, timeout => '1 s')", [f"text {millis}"])
        analyst.execute("RESET statement_timeout")
        assert len(db.execute(KEPT_LOOPBACKS).fetchall()) <= 2  # a busy one is replaced
    deadline = time.monotonic() + 10
    while db.execute(WAITING_LOOPBACKS).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.05)  # the statements left running there end
    assert db.execute(WAITING_LOOPBACKS).fetchone()[0] == 0
    with pytest.raises(psycopg.errors.RaiseException, match="no answer"):
        analyst.execute("SELECT semsql.embed_text('after the cancels', timeout => '0 s')")
    assert len(db.execute(KEPT_LOOPBACKS).fetchall()) == 1


def test_a_kept_loopback_that_has_ended_is_opened_again(login_as, query_worker, db) -> None:
    no_loopbacks_left(db)
    analyst = login_as("semsql_analyst")
    analyst.execute("SELECT semsql.embed_text('a quiet lake')")
    [(pid, _, _)] = db.execute(KEPT_LOOPBACKS).fetchall()
    db.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # as idle_session_timeout would
    analyst.execute("SELECT semsql.embed_text('a loud river')")
    [(again, _, _)] = db.execute(KEPT_LOOPBACKS).fetchall()
    assert again != pid


def test_each_login_is_answered_from_its_own_cache_only(login_as, query_worker) -> None:
    """A shared cache would tell one analyst what another searched for."""
    first, second = login_as("semsql_analyst"), login_as("semsql_analyst")
    first.execute("SELECT semsql.embed_text('symptoms of something private')")
    query_worker.stop()
    first.execute("SELECT semsql.embed_text('symptoms of something private')")  # cached
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="semsql worker"):
        second.execute("SELECT semsql.embed_text('symptoms of something private')")


def test_one_login_can_keep_only_so_many_texts_waiting(login_as, silent_worker) -> None:
    flooder, other = login_as("semsql_analyst"), login_as("semsql_analyst")
    limit = flooder.execute("SELECT semsql.max_waiting_queries()").fetchone()[0]
    for n in range(limit):
        with pytest.raises(psycopg.errors.RaiseException, match="no answer"):
            flooder.execute("SELECT semsql.embed_text(%s, timeout => '0 s')", [f"flood {n}"])
    with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="wait for"):
        flooder.execute("SELECT semsql.embed_text('one more', timeout => '0 s')")
    with pytest.raises(psycopg.errors.RaiseException, match="no answer"):
        other.execute("SELECT semsql.embed_text('mine', timeout => '0 s')")


def test_the_query_cache_keeps_the_newest_rows_and_waiting_requests(conn) -> None:
    conn.execute(
        """INSERT INTO semsql.query_embeddings (space, text_sha256, text, embedding, requested_at)
           SELECT 'text', semsql.query_text_digest('q' || n), 'q' || n,
                  CASE WHEN n <> 1 THEN '[1,0,0]'::vector END, now() - n * interval '1 day'
           FROM generate_series(1, 40) AS n"""
    )
    assert conn.execute("SELECT semsql.trim_query_cache(10, '30 days')").fetchone() == (30,)
    kept = {row[0] for row in conn.execute("SELECT text FROM semsql.query_embeddings")}
    assert kept == {f"q{n}" for n in range(1, 11)}  # q1 is a request still waiting
    assert conn.execute("SELECT semsql.trim_query_cache(100, '5 days')").fetchone() == (5,)


def test_a_worker_dying_under_embed_text_is_noticed_within_a_second(
    db_url, db, silent_worker
) -> None:
    killer = threading.Timer(
        1.0,
        lambda: db.execute("SELECT pg_terminate_backend(%s)", [silent_worker.info.backend_pid]),
    )
    with database.connect(db_url) as asking:  # one transaction: its stats snapshot is kept
        asking.execute("SELECT count(*) FROM pg_stat_activity")
        killer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="semsql worker"):
            asking.execute("SELECT semsql.embed_text('anyone there?', timeout => '20 s')")
        waited = time.monotonic() - started
    killer.join()
    assert waited < 10  # noticed long before the 20 s timeout (in about 1.5 s here)


# Every advisory-lock key semsql has used: an analyst may hold them all.
OLD_ADVISORY_KEYS = (
    "pg_advisory_lock(126943972799853)",
    "pg_advisory_lock(hashtext('semsql.recognition'), 0)",
    "pg_advisory_lock(hashtext('semsql.face_clusters'), 0)",
    "pg_advisory_lock(hashtext('semsql.vector_index'), hashtext('text'))",
    "pg_advisory_lock(hashtext('semsql.register_vector_space'), hashtext('text'))",
)


def face_vector(i: int) -> np.ndarray:
    vector = np.zeros(512, dtype=np.float32)
    vector[i] = 1.0
    return vector


def test_an_analyst_holding_every_lock_it_can_take_stalls_no_writer(login_as, db) -> None:
    db.execute("UPDATE semsql.stages SET enabled = (name = 'text')")
    asset_ids = [
        db.execute(
            "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s) RETURNING id",
            [f"/a{n}.jpg", f"{n:064x}"],
        ).fetchone()[0]
        for n in range(3)
    ]
    db.execute(
        "INSERT INTO semsql.vector_spaces (space, model, dims, index_deferred_since) "
        "VALUES ('text', 'm', 3, now())"
    )

    analyst = login_as("semsql_analyst")
    analyst.autocommit = False
    for key in OLD_ADVISORY_KEYS:
        analyst.execute(f"SELECT {key}")
    tables = [
        row[0]
        for row in analyst.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'semsql'::regnamespace "
            "AND relkind = 'r' AND has_table_privilege(oid, 'SELECT')"
        )
    ]
    for table in tables:  # the strongest lock SELECT allows, held until the end of the test
        analyst.execute(
            sql.SQL("LOCK TABLE semsql.{} IN ACCESS SHARE MODE").format(sql.Identifier(table))
        )
    for attempt in (
        "SELECT * FROM semsql.mutexes FOR SHARE",
        "LOCK TABLE semsql.mutexes IN ROW SHARE MODE",
        "SELECT semsql.take_mutex('settle_assets')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("SAVEPOINT s")
            try:
                analyst.execute(attempt)
            finally:
                analyst.execute("ROLLBACK TO SAVEPOINT s")

    worker = login_as("semsql_worker")
    worker.execute("SET lock_timeout = '5s'")  # a stalled writer fails here instead of hanging
    claimed = worker.execute("SELECT task_id FROM semsql.claim_tasks('w', 'text', 10)").fetchall()
    ids = [row[0] for row in claimed]
    assert worker.execute("SELECT semsql.complete_tasks('w', %s, 'm')", [ids[:2]]).fetchone() == (
        2,
    )
    worker.execute("SELECT * FROM semsql.fail_tasks('w', %s, '{boom}', '{true}')", [ids[2:]])
    steps = worker.execute("SELECT semsql.vector_index_build_steps('text')").fetchone()[0]
    assert steps and steps[-1].startswith("CREATE INDEX CONCURRENTLY")
    status = db.execute("SELECT index FROM semsql.vector_index_status WHERE space = 'text'")
    assert status.fetchone() == ("building",)
    face = worker.execute(
        "INSERT INTO semsql.faces (asset_id, box, detector, embedding, embedding_model) "
        "VALUES (%s, '{0,0,9,9}', 'mtcnn', %s, 'facenet') RETURNING id",
        [asset_ids[0], face_vector(0)],
    ).fetchone()[0]
    worker.execute("SELECT * FROM semsql.enrol_faces('Ada', %s)", [[face]])
    worker.execute("SELECT semsql.refresh_face_clusters()")
    worker.execute("SELECT semsql.register_vector_space('text', 'm', 3)")
    analyst.rollback()


def test_an_analyst_holding_the_advisory_init_key_does_not_hold_back_semsql_init(
    login_as, db_url
) -> None:
    analyst = login_as("semsql_analyst")
    analyst.execute("SELECT pg_advisory_lock(%s)", [migrate.ADVISORY_LOCK_KEY])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")  # held back, it fails here instead of waiting
        assert migrate.init(conn).applied == []
