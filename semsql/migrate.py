"""`semsql init`: extensions, numbered migrations (once each), then the idempotent sql/ files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import psycopg
from psycopg import sql

from . import stages
from .database import fetch_value

EXTENSIONS = ("vector", "dblink", "pg_trgm")
# The lock of a first install (later ones lock a row of semsql.mutexes). Any constant works; it
# only has to be the same for every semsql process.
ADVISORY_LOCK_KEY = 0x73656D73716C  # "semsql"
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class SqlFile:
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class InitReport:
    applied: list[str]
    already_applied: int
    definitions: int


def migration_files(folder: Traversable | None = None) -> list[SqlFile]:
    """The numbered migrations, in order: semsql's own, or those of another release's folder."""
    found = []
    for entry in (folder or files("semsql.migrations")).iterdir():
        if entry.name.endswith(".sql"):
            if not MIGRATION_NAME.match(entry.name):
                raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
            found.append(SqlFile(entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda f: f.name)


def definition_files(folder: Traversable | None = None) -> list[SqlFile]:
    """The idempotent definitions, in order: semsql's own, or those of another release's folder."""
    found = [
        SqlFile(entry.name, entry.read_text(encoding="utf-8"))
        for entry in (folder or files("semsql.sql")).iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda f: f.name)


def init(
    conn: psycopg.Connection,
    *,
    migrations: Traversable | None = None,
    definitions: Traversable | None = None,
) -> InitReport:
    """Bring the database to the current schema. Safe to run any number of times, concurrently.

    `migrations` and `definitions` are folders of another release's files (the upgrade test
    builds the previous release's schema with them); by default, this package's."""
    if not conn.autocommit:
        raise ValueError("init() needs an autocommit connection: it manages its own transactions")
    # One transaction: a failed init leaves the database as it found it.
    with conn.transaction():
        _take_init_lock(conn)
        _create_extensions(conn)
        conn.execute("CREATE SCHEMA IF NOT EXISTS semsql")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS semsql.schema_migrations (
                   name       text PRIMARY KEY,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        numbered = migration_files(migrations)
        applied = _apply_migrations(conn, numbered)
        idempotent = definition_files(definitions)
        for sql_file in idempotent:
            _execute_file(conn, sql_file)
        if definitions is None:  # another release's stage rows are its caller's to write
            stages.write_rows(conn)
    return InitReport(applied, len(numbered) - len(applied), len(idempotent))


def _take_init_lock(conn: psycopg.Connection) -> None:
    """Until commit: the lock of one init at a time. Once semsql.mutexes exists it is a row lock
    there, which only roles that may write can take (an analyst could hold an advisory lock for
    ever and so hold back every init); on a database semsql has not been installed in, an
    advisory lock."""
    if conn.execute("SELECT to_regclass('semsql.mutexes')").fetchone() == (None,):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        return
    conn.execute("INSERT INTO semsql.mutexes (name) VALUES ('init') ON CONFLICT DO NOTHING")
    conn.execute("SELECT FROM semsql.mutexes WHERE name = 'init' FOR UPDATE")


def _create_extensions(conn: psycopg.Connection) -> None:
    available = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", [list(EXTENSIONS)]
        )
    }
    missing = [name for name in EXTENSIONS if name not in available]
    if missing:
        raise MigrationError(
            f"this PostgreSQL server lacks the extension(s) {', '.join(missing)}: semsql needs "
            "pgvector >= 0.8 and the contrib modules dblink and pg_trgm (docker/postgres/ "
            "builds such a server; unset SEMSQL_DATABASE_URL to use the embedded one)"
        )
    for name in EXTENSIONS:
        conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
    version = fetch_value(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    if major_minor < (0, 8):
        raise MigrationError(
            f"pgvector {'.'.join(map(str, major_minor))} is installed; semsql needs >= 0.8 "
            "(ALTER EXTENSION vector UPDATE after upgrading the package)"
        )


def _apply_migrations(conn: psycopg.Connection, migrations: list[SqlFile]) -> list[str]:
    done: dict[str, str] = dict(
        conn.execute("SELECT name, checksum FROM semsql.schema_migrations").fetchall()
    )
    applied = []
    for migration in migrations:
        if migration.name in done:
            if done[migration.name] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.name} was changed after it was applied; "
                    "migrations are forward-only: add a new numbered file instead"
                )
            continue
        _execute_file(conn, migration)
        conn.execute(
            "INSERT INTO semsql.schema_migrations (name, checksum) VALUES (%s, %s)",
            [migration.name, migration.checksum],
        )
        applied.append(migration.name)
    return applied


def _execute_file(conn: psycopg.Connection, sql_file: SqlFile) -> None:
    try:
        # No parameters: psycopg sends the whole file as one simple-protocol query.
        conn.execute(sql_file.text.encode())
    except psycopg.Error as error:
        raise MigrationError(f"{sql_file.name}: {error}") from error
