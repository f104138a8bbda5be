"""The whole catalog of schema semsql as data, to compare two databases' schemas: every
column, relation, constraint, index, view, function, trigger and type, the grants and comments,
the migrations applied and the settings rows init writes."""

from __future__ import annotations

import psycopg

# The whole catalog of schema semsql, each part as sorted rows.
CATALOG = {
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity, pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum)
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'semsql'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped""",
    "relations": """
        SELECT relname, relkind, relacl::text, obj_description(oid, 'pg_class')
        FROM pg_class WHERE relnamespace = 'semsql'::regnamespace""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'semsql'::regnamespace""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'semsql'",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace = 'semsql'::regnamespace AND c.relkind IN ('v', 'm')""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_function_result(p.oid), md5(p.prosrc),
               p.proconfig::text, p.prosecdef, p.provolatile, p.proisstrict, p.proacl::text,
               obj_description(p.oid, 'pg_proc')
        FROM pg_proc p WHERE p.pronamespace = 'semsql'::regnamespace""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled
        FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'semsql.%' AND NOT tgisinternal""",
    "types": """
        SELECT t.typname, t.typtype, format_type(t.oid, NULL) FROM pg_type t
        WHERE t.typnamespace = 'semsql'::regnamespace""",
    "schema": """
        SELECT nspacl::text, obj_description(oid, 'pg_namespace') FROM pg_namespace
        WHERE nspname = 'semsql'""",
    "migrations": "SELECT name, checksum FROM semsql.schema_migrations",
    "settings": """
        SELECT 'stage', row_to_json(s)::text FROM semsql.stages s
        UNION ALL SELECT 'mutex', name FROM semsql.mutexes""",
}


def catalog(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    # embed_text's login is named after its database: the grants to it are compared by kind.
    (login,) = conn.execute("SELECT role_name FROM semsql.loopback_login").fetchone()

    def same_login(value: object) -> object:
        return value.replace(login, "<embed login>") if isinstance(value, str) else value

    return {
        part: sorted((tuple(map(same_login, row)) for row in conn.execute(q)), key=repr)
        for part, q in CATALOG.items()
    }
