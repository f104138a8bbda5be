"""What every command shares: a database connection with friendly errors, JSON output."""

from __future__ import annotations

import json
import math
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from semsql import database
from semsql.cli.errors import UserError
from semsql.embedded import EmbeddedServerError


def connect(*, autocommit: bool = False) -> psycopg.Connection:
    try:
        return database.connect(autocommit=autocommit)
    except EmbeddedServerError as error:
        raise UserError(f"cannot start the embedded PostgreSQL server: {error}") from None
    except psycopg.OperationalError as error:
        raise UserError(
            f"cannot connect to the database: {str(error).strip()} "
            "(check SEMSQL_DATABASE_URL, or unset it to use the embedded server)"
        ) from None


def require_schema(conn: psycopg.Connection) -> None:
    found = conn.execute("SELECT to_regclass('semsql.schema_migrations')").fetchone()[0]
    if found is None:
        raise UserError("this database has no semsql schema yet: run `semsql init`")


def fetch_dicts(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict]:
    """The rows of a query as dicts keyed by column name."""
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN (which compares false with both bounds)."""

    name = "float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number
