"""`semsql jobs`: what ingest calls did."""

from __future__ import annotations

from typing import Any

import click

from semsql.cli.common import ROW_ID, connect, echo_json, fetch_dicts, require_schema
from semsql.cli.errors import UserError
from semsql.ingest import fail_abandoned_jobs

JOB_COLUMNS = """id, status, collection, new_count, updated_count, skipped_count, failed_count,
                 skipped_reasons, error, created_at, started_at, ingested_at, finished_at"""


@click.command()
@click.argument("job_id", type=ROW_ID, required=False)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="How many recent jobs to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs(job_id: int | None, limit: int, as_json: bool) -> None:
    """List recent jobs, or show one job with its skipped files by reason and its per-file
    errors.

    A job whose `semsql ingest` was killed before it had read every file (its connection is
    gone) is marked failed here: "interrupted: its ingest stopped".

    \b
    Examples:
      semsql jobs
      semsql jobs 12
      semsql jobs 12 --json | jq '.errors[].uri'
    """
    with connect() as conn:
        require_schema(conn)
        fail_abandoned_jobs(conn)
        if job_id is None:
            rows = fetch_dicts(
                conn, f"SELECT {JOB_COLUMNS} FROM semsql.jobs ORDER BY id DESC LIMIT %s", [limit]
            )
            if as_json:
                echo_json(rows)
            elif not rows:
                click.echo("no jobs yet: `semsql ingest PATH` makes one")
            for row in [] if as_json else rows:
                click.echo(_one_line(row))
            return
        found = fetch_dicts(conn, f"SELECT {JOB_COLUMNS} FROM semsql.jobs WHERE id = %s", [job_id])
        if not found:
            raise UserError(f"no job {job_id}")
        job = found[0]
        job["errors"] = fetch_dicts(
            conn,
            """SELECT uri, error_code AS code, error FROM semsql.job_items
               WHERE job_id = %s AND outcome = 'failed' ORDER BY position""",
            [job_id],
        )
    if as_json:
        echo_json(job)
        return
    click.echo(_one_line(job))
    if job["skipped_reasons"]:
        click.echo(f"  skipped: {skipped_by_reason(job['skipped_reasons'])}")
    if job["error"]:
        click.echo(f"  error: {job['error']}")
    for error in job["errors"]:
        click.echo(f"  {error['uri']}: {error['code']}: {error['error']}")


def _one_line(job: dict[str, Any]) -> str:
    return (
        f"job {job['id']} {job['status']:<9} {job['created_at']:%Y-%m-%d %H:%M}  "
        f"{job['new_count']} new, {job['updated_count']} updated, "
        f"{job['skipped_count']} skipped, {job['failed_count']} failed"
    )


def skipped_by_reason(reasons: dict[str, int]) -> str:
    """ "12 unchanged, 3 sidecar, 1 unsupported format .dng": the most frequent first."""
    ordered = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{count} {reason}" for reason, count in ordered)
