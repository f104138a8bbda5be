"""What every command shares: a database connection with friendly errors, JSON output."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from semsql import config, database
from semsql.cli.errors import UserError
from semsql.database import fetch_value
from semsql.embedded import EmbeddedServerError

PORT_ENV = "SEMSQL_PORT"
BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1

ROW_ID = click.IntRange(1, BIGINT_MAX)
"""The id of a row (an asset, job, face or cluster): a positive bigint."""


def connect(*, autocommit: bool = False) -> psycopg.Connection:
    check_environment()
    try:
        return database.connect(autocommit=autocommit)
    except EmbeddedServerError as error:
        raise UserError(f"cannot start the embedded PostgreSQL server: {error}") from None
    except psycopg.OperationalError as error:
        raise UserError(
            f"cannot connect to the database: {str(error).strip()} "
            f"(check {config.DATABASE_URL_ENV}, or unset it to use the embedded server)"
        ) from None
    except psycopg.ProgrammingError as error:  # libpq cannot parse the connection string
        raise UserError(
            f"{config.DATABASE_URL_ENV} is not a connection string: {str(error).strip()} "
            "(write it as postgresql://user:password@host:port/database, percent-encoding "
            "special characters, or unset it to use the embedded server)"
        ) from None


def check_environment() -> None:
    """Settings that would only fail later, deep inside: refused here in one line."""
    if os.environ.get(config.DATABASE_URL_ENV):
        return  # the embedded server, and its settings, are not used
    port = os.environ.get(PORT_ENV)
    if port and not (port.strip().isdecimal() and 1 <= int(port) <= 65535):
        raise UserError(f"{PORT_ENV} must be a port number from 1 to 65535, not {port!r}")


def require_schema(conn: psycopg.Connection) -> None:
    found = fetch_value(conn, "SELECT to_regclass('semsql.schema_migrations')")
    if found is None:
        raise UserError("this database has no semsql schema yet: run `semsql init`")


def fetch_dicts(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict[str, Any]]:
    """The rows of a query as dicts keyed by column name."""
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN (which compares false with both bounds) and the
    infinities, with or without bounds."""

    name = "float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number.", param, ctx)
        if math.isinf(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
