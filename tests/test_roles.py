"""Roles: an analyst searches and reads but changes nothing, a worker writes results; no
function depends on the caller's search_path; init works without CREATEROLE."""

from __future__ import annotations

import hashlib
import re

import psycopg
import pytest
from fix_corpus import TEXT_MODEL
from psycopg import sql
from psycopg.conninfo import make_conninfo

from semsql import migrate
from semsql.search import SearchRequest, run_search
from semsql.testing import scratch_database


def test_init_makes_both_roles_once(db_url) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        migrate.init(conn)
        rows = conn.execute(
            """SELECT rolname, rolcanlogin, rolsuper FROM pg_roles
               WHERE rolname IN ('semsql_analyst', 'semsql_worker') ORDER BY 1"""
        ).fetchall()
    assert rows == [("semsql_analyst", False, False), ("semsql_worker", False, False)]


def test_no_function_is_executable_by_public(conn) -> None:
    open_to_all = conn.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p
           WHERE p.pronamespace = 'semsql'::regnamespace
             AND (p.proacl IS NULL
                  OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))"""
    ).fetchall()
    assert open_to_all == []


SEARCH_PATH = re.compile(r"^search_path=(.*)$")
CALLED = re.compile(r"\bsemsql\.(\w+)\s*\(")


def test_security_definer_functions_and_all_they_reach_pin_pg_catalog_then_pg_temp(conn) -> None:
    """A caller's temporary objects come before the path unless pg_temp is named last; in what
    runs with the owner's rights, the path holds only pg_catalog, so that neither a temporary
    relation nor a function planted in a writable schema can stand in for semsql's."""
    paths: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    definers = set()
    rows = conn.execute(
        """SELECT p.proname, p.prosecdef, p.proconfig, p.prosrc FROM pg_proc p
           WHERE p.pronamespace = 'semsql'::regnamespace"""
    )
    for name, definer, config, source in rows:
        found = [m.group(1) for c in config or [] if (m := SEARCH_PATH.match(c))]
        paths.setdefault(name, set()).add(found[0] if found else "")
        calls.setdefault(name, set()).update(CALLED.findall(source))
        if definer:
            definers.add(name)
    assert definers == {
        "embed_text",
        "embed_texts",
        "request_query_embedding",
        "await_query_embedding",
    }
    not_ending_in_pg_temp = {
        n for n, p in paths.items() if any(not x.endswith(", pg_temp") for x in p)
    }
    assert not_ending_in_pg_temp == set()

    reached, frontier = set(), set(definers)
    while frontier:
        name = frontier.pop()
        reached.add(name)
        frontier |= (calls[name] & paths.keys()) - reached
    expected = {"live_workers", "backend_alive", "embed_loopback_conninfo", "check_query_text"}
    assert expected | {"notify", "require_query_worker", "quote_conninfo"} < reached
    loose = {name for name in reached if paths[name] != {"pg_catalog, pg_temp"}}
    assert loose == set()


def test_the_analyst_searches_and_reads_but_changes_nothing(corpus) -> None:
    conn = corpus.conn
    query = "youngsters playing in the snow"
    conn.execute(  # a cached query vector, as a worker would have left it
        """INSERT INTO semsql.query_embeddings (space, text_sha256, text, model, embedding)
           VALUES ('text', %s, %s, %s, %s)""",
        [hashlib.sha256(query.encode()).hexdigest(), query, TEXT_MODEL, corpus.vector(query)],
    )
    conn.execute("SET ROLE semsql_analyst")
    hits, notices = run_search(conn, SearchRequest(query=query, tags=("winter",), k=2))
    assert set(corpus.keys(hits)) == {"snowman", "sledging"} and notices == []
    similar = conn.execute("SELECT * FROM semsql.similar(%s, 3)", [hits[0].asset_id]).fetchall()
    assert len(similar) == 3
    names = conn.execute("SELECT name FROM semsql.match_people('joe park')").fetchall()
    assert names == [("Joe Park",)]
    conn.execute("SELECT * FROM semsql.duplicates(0.01, space => 'text')").fetchall()
    views = ["asset_overview", "asset_tags", "tag_summary", "emotion_summary", "people_summary"]
    for view in [*views, "queue_status"]:
        count = sql.SQL("SELECT count(*) FROM semsql.{}").format(sql.Identifier(view))
        assert conn.execute(count).fetchone()[0] > 0
    denied = [
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (1, 'x', 'user')",
        "UPDATE semsql.assets SET collection = 'x'",
        "DELETE FROM semsql.embeddings",
        "SELECT * FROM semsql.loopback_login",
        "SELECT * FROM semsql.query_embeddings",
        "CALL semsql.request_query_embedding('text', 'x', 'someone')",
        "SELECT * FROM semsql.await_query_embedding('text', 'someone', 'x', '1 s')",
        "SELECT semsql.embed_loopback_conninfo()",
        "SELECT semsql.refresh_search_documents(ARRAY[1::bigint])",
        "SELECT semsql.register_vector_space('image', 'other', 3)",
    ]
    for statement in denied:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(statement)
    conn.rollback()


def test_the_worker_role_writes_results(conn) -> None:
    asset_id = conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES ('/w.jpg', repeat('b', 64)) RETURNING id"
    ).fetchone()[0]
    conn.execute("SET ROLE semsql_worker")
    conn.execute(
        """INSERT INTO semsql.tags (asset_id, label, confidence, source)
           VALUES (%s, 'dog', 0.9, 'detr')""",
        [asset_id],
    )
    conn.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'blip', 'a dog')",
        [asset_id],
    )
    conn.execute("SELECT * FROM semsql.claim_tasks('w1', 'tags', 10)").fetchall()
    conn.execute("SET CONSTRAINTS semsql.search_documents_stale_refresh IMMEDIATE")
    assert conn.execute(
        "SELECT caption, labels FROM semsql.search_documents WHERE asset_id = %s", [asset_id]
    ).fetchone() == ("a dog", ["dog"])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM semsql.loopback_login")


def test_search_does_not_depend_on_the_callers_search_path(corpus) -> None:
    conn = corpus.conn
    conn.execute("CREATE SCHEMA shadow")
    conn.execute("CREATE FUNCTION shadow.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$")
    conn.execute("CREATE FUNCTION shadow.btrim(text) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$")
    conn.execute("CREATE TABLE shadow.search_documents (asset_id bigint)")
    expected = {corpus.ids[key] for key in ("snowman", "sledging", "skiing")}
    for path in ("shadow, public", "''"):
        conn.execute(f"SET search_path = {path}")
        hits, _ = run_search(conn, SearchRequest(tags=("WINTER",), query="snow on the hill", k=10))
        assert {hit.asset_id for hit in hits} == expected
    conn.rollback()


def test_init_without_createrole_goes_on_with_a_notice(server_url) -> None:
    owner, name = "semsql_test_owner", "semsql_test_owned"
    admin = psycopg.connect(server_url, autocommit=True)
    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'owner-pw'").format(sql.Identifier(owner)))
    notices: list[str] = []
    try:
        with scratch_database(server_url, name, owner=owner) as superuser_url:
            with psycopg.connect(superuser_url, autocommit=True) as db:
                for extension in migrate.EXTENSIONS:  # as a managed server's provider would
                    db.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(extension)))
            # The roles exist on this shared server: hide the analyst so that init must make it.
            admin.execute("ALTER ROLE semsql_analyst RENAME TO semsql_analyst_hidden")
            try:
                url = make_conninfo(superuser_url, user=owner, password="owner-pw")
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                    report = migrate.init(conn)
                    tables = conn.execute(
                        "SELECT count(*) FROM pg_tables WHERE schemaname = 'semsql'"
                    ).fetchone()[0]
                    worker_grant = conn.execute(
                        "SELECT has_table_privilege('semsql_worker', 'semsql.tags', 'INSERT')"
                    ).fetchone()[0]
            finally:
                admin.execute("ALTER ROLE semsql_analyst_hidden RENAME TO semsql_analyst")
    finally:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
        admin.close()
    assert report.applied and tables > 10 and worker_grant
    assert any("role semsql_analyst was not created" in notice for notice in notices)
