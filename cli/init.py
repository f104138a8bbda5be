"""`semsql init`: create or upgrade the schema."""

from __future__ import annotations

import click

from semsql import migrate
from semsql.cli.common import connect, echo_json
from semsql.cli.errors import UserError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def init(as_json: bool) -> None:
    """Create the extensions, apply new migrations and (re)define the SQL functions.

    Safe to run again at any time: migrations run once each, definitions are replaced.

    \b
    Example:
      semsql init
    """
    with connect(autocommit=True) as conn:
        try:
            report = migrate.init(conn)
        except migrate.MigrationError as error:
            raise UserError(str(error)) from None
    if as_json:
        echo_json(
            {
                "applied": report.applied,
                "already_applied": report.already_applied,
                "definitions": report.definitions,
            }
        )
        return
    if report.applied:
        click.echo(f"applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
    else:
        click.echo(f"schema up to date ({report.already_applied} migration(s) applied earlier)")
    click.echo(f"defined functions and views from {report.definitions} file(s)")
