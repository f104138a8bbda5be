"""`semsql serve`: the web pages and the HTTP API (needs the serve extra)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from semsql import config, database
from semsql.cli.common import connect, require_schema
from semsql.cli.errors import UserError
from semsql.serve import SERVE_EXTRA
from semsql.serve.settings import MEDIA_ENV, TOKEN_ENV, SettingsError, check_bind

SERVE_LIBRARIES = {
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "multipart",
    "orjson",
    "psycopg_pool",
}
GRACEFUL_SHUTDOWN_S = 10
"""On SIGTERM, how long requests in flight (a stalled upload) may take before they are cut."""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    help="Required on any address but loopback: clients send it as a bearer token, people "
    "log in with it.",
)
@click.option(
    "--media-dir",
    envvar=MEDIA_ENV,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where uploaded files are stored [default: SEMSQL_HOME/media].",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes (each with its own database connections).",
)
@click.option("--access-log", is_flag=True, help="Log every request on stderr.")
def serve(
    host: str, port: int, token: str | None, media_dir: Path | None, workers: int,
    access_log: bool,
) -> None:  # fmt: skip
    """Serve the web pages (search, assets, people, duplicates, jobs) and the HTTP API
    (documented at /docs). Searches run as semsql_analyst, uploads and edits as
    semsql_editor; uploads are ingested as `semsql ingest` ingests files.

    \b
    Examples:
      semsql serve                                   # http://127.0.0.1:8000/
      SEMSQL_SERVE_TOKEN=... semsql serve --host 0.0.0.0
      curl -F files=@cat.jpg http://127.0.0.1:8000/api/assets
    """
    try:
        check_bind(host, token)
    except SettingsError as error:
        raise UserError(str(error)) from None
    try:
        import uvicorn

        import semsql.serve.app  # noqa: F401  # what each worker process loads
    except ModuleNotFoundError as error:
        if error.name not in SERVE_LIBRARIES:
            raise
        raise UserError(
            f"semsql serve needs the serve extra ({error.name} is not installed): {SERVE_EXTRA}"
        ) from None
    from semsql.serve.settings import default_settings

    with connect() as conn:
        require_schema(conn)
    settings = default_settings(media_dir, token)
    # The worker processes read their settings as the app factory does: from the environment.
    os.environ[MEDIA_ENV] = str(settings.media_dir)
    if token:
        os.environ[TOKEN_ENV] = token
    os.environ.setdefault(config.DATABASE_URL_ENV, database.database_url())
    click.echo(f"serving http://{host}:{port}/ (media in {settings.media_dir})", err=True)
    uvicorn.run(
        "semsql.serve.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
