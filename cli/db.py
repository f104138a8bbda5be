"""`semsql db ...`: the database semsql uses, embedded or not."""

from __future__ import annotations

import os
import subprocess

import click

from semsql import config, database
from semsql.cli.common import check_environment, connect, echo_json
from semsql.cli.errors import UserError
from semsql.embedded import POSTGRES_BIN_PATH


@click.group()
def db() -> None:
    """The database: the embedded server, or SEMSQL_DATABASE_URL when set.

    \b
    Examples:
      semsql db url                      # a DSN for psql, BI tools, SQLAlchemy
      psql "$(semsql db url)"
      semsql db psql -c 'SELECT count(*) FROM semsql.assets'
      semsql db stop                     # stop the embedded server
    """


def _external_url() -> str | None:
    return os.environ.get(config.DATABASE_URL_ENV) or None


@db.command()
def url() -> None:
    """Print the database URL (starts the embedded server when needed)."""
    check_environment()
    click.echo(_external_url() or database.embedded_server().ensure_running())


@db.command()
def start() -> None:
    """Start the embedded server (a no-op when it already runs)."""
    if _external_url():
        raise UserError(f"{config.DATABASE_URL_ENV} is set: nothing to start")
    check_environment()
    database.embedded_server().ensure_running()
    status_ = database.embedded_server().status()
    click.echo(f"embedded PostgreSQL running on 127.0.0.1:{status_.port} (pid {status_.pid})")


@db.command()
def stop() -> None:
    """Stop the embedded server."""
    if _external_url():
        raise UserError(f"{config.DATABASE_URL_ENV} is set: semsql runs no server")
    stopped = database.embedded_server().stop()
    click.echo("stopped" if stopped else "not running")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """Say which database semsql uses and whether it runs."""
    if _external_url():
        info: dict[str, object] = {"mode": "external", "url_env": config.DATABASE_URL_ENV}
    else:
        s = database.embedded_server().status()
        info = {
            "mode": "embedded",
            "running": s.running,
            "pid": s.pid,
            "port": s.port,
            "data_dir": str(s.data_dir),
        }
    if as_json:
        echo_json(info)
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")


@db.command(context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql(psql_args: tuple[str, ...]) -> None:
    """Open psql on the database; extra arguments go to psql."""
    with connect():
        pass  # starts the embedded server and checks the connection before psql does
    url_ = _external_url() or database.embedded_server().dsn()
    raise SystemExit(subprocess.call([str(POSTGRES_BIN_PATH / "psql"), url_, *psql_args]))
