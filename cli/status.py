"""`semsql status`: the enrichment queue, the stages whose model is not available, the workers,
and what failed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from semsql.cli.common import connect, echo_json, fetch_dicts, require_schema

STAGES_QUERY = """SELECT stage, enabled, pending, retry_waiting, running, done, failed, waiting,
                         workers, oldest_pending_at, last_finished_at
                  FROM semsql.queue_status ORDER BY position"""
UNAVAILABLE_QUERY = """SELECT stage, unavailable AS reason, unavailable_fix AS fix,
                              waiting AS waiting_tasks, unavailable_since AS since
                       FROM semsql.queue_status
                       WHERE enabled AND unavailable IS NOT NULL ORDER BY position"""
WORKERS_QUERY = """SELECT name, device, stages, query_spaces, problems, started_at, heartbeat_at
                   FROM semsql.worker_status WHERE alive ORDER BY started_at"""
FAILED_QUERY = """SELECT task_id, asset_id, uri, stage, attempts, error, finished_at
                  FROM semsql.failed_tasks ORDER BY finished_at DESC NULLS LAST LIMIT %s"""
REASONS_QUERY = """SELECT stage, error, count(*) AS tasks, min(uri) AS example
                   FROM semsql.failed_tasks GROUP BY stage, error
                   ORDER BY count(*) DESC, stage LIMIT %s"""
ASSETS_QUERY = "SELECT status, count(*) FROM semsql.assets GROUP BY status"
INDEXES_QUERY = """SELECT space, model, dims, index, deferred_since
                   FROM semsql.vector_index_status ORDER BY space"""


@click.command()
@click.option(
    "--failed",
    "failed_limit",
    type=click.IntRange(0, 100_000),
    default=10,
    show_default=True,
    help="How many failure reasons (and, with --json, failed tasks) to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(failed_limit: int, as_json: bool) -> None:
    """Show the enrichment queue per stage, the stages whose model is not available, the
    running workers and the failed tasks.

    A stage whose model no worker could load (or that is off) is listed once, with why and
    how to fix it; its tasks wait (they are not failed) and its assets are ready without it.
    The next worker that loads the model fills it in.

    \b
    Examples:
      semsql status
      semsql status --failed 100
      semsql status --json | jq '.stages[] | select(.failed > 0)'
      semsql worker --retry-failed --until-idle     # then try the failures again
    """
    with connect() as conn:
        require_schema(conn)
        report = {
            "stages": fetch_dicts(conn, STAGES_QUERY),
            "unavailable_stages": fetch_dicts(conn, UNAVAILABLE_QUERY),
            "assets": dict(conn.execute(ASSETS_QUERY).fetchall()),
            "vector_indexes": fetch_dicts(conn, INDEXES_QUERY),
            "workers": fetch_dicts(conn, WORKERS_QUERY),
            "failed": fetch_dicts(conn, FAILED_QUERY, [failed_limit]),
            "failure_reasons": fetch_dicts(conn, REASONS_QUERY, [failed_limit]),
        }
    if as_json:
        echo_json(report)
        return
    _print(report)


def _print(report: dict[str, Any]) -> None:
    click.echo(
        f"{'stage':<13}{'pending':>9}{'running':>9}{'done':>9}{'failed':>9}{'waiting':>9}"
        f"{'workers':>9}"
    )
    for row in report["stages"]:
        if not row["enabled"]:
            click.echo(f"{row['stage']:<13}{'(disabled)':>11}")
            continue
        retrying = f" ({row['retry_waiting']} waiting to retry)" if row["retry_waiting"] else ""
        click.echo(
            f"{row['stage']:<13}{row['pending']:>9}{row['running']:>9}{row['done']:>9}"
            f"{row['failed']:>9}{row['waiting']:>9}{row['workers']:>9}{retrying}"
        )
    unavailable = report["unavailable_stages"]
    if unavailable:
        click.echo(
            "\nnot available (their tasks wait, assets are ready without them; a worker that "
            "loads the model fills them in):"
        )
    for row in unavailable:
        fix = f" (fix: {row['fix']})" if row["fix"] else ""
        click.echo(f"  {row['stage']}: model not available — {row['reason']}{fix}")
    assets = report["assets"]
    click.echo(
        "\nassets: "
        + ", ".join(f"{assets.get(state, 0)} {state}" for state in ("ready", "pending", "failed"))
    )

    now = datetime.now(UTC)
    for index in report["vector_indexes"]:
        space, state = index["space"], index["index"]
        line = f"{space} vectors: {index['model']} ({index['dims']}-d), index {state}"
        if state in ("deferred", "building"):
            minutes = (now - index["deferred_since"]).total_seconds() / 60
            line += (
                f" (dropped {minutes:.0f} min ago for a backlog: a worker builds it once that is "
                "written; searches scan exactly meanwhile)"
            )
        click.echo(line)

    reported = {row["stage"] for row in unavailable}
    if not report["workers"]:
        click.echo("\nno worker running: start one with `semsql worker`")
    else:
        click.echo("\nworkers:")
    for worker in report["workers"]:
        beat = (now - worker["heartbeat_at"]).total_seconds()
        queries = ", ".join(worker["query_spaces"]) or "none"
        click.echo(
            f"  {worker['name']}  {worker['device']}  {','.join(worker['stages'])}  "
            f"(embed_text: {queries}; heartbeat {beat:.0f} s ago)"
        )
        for stage, problem in sorted(worker["problems"].items()):
            if stage not in reported:  # said once above
                click.echo(f"    {stage}: {problem}")

    failed_total = sum(row["failed"] for row in report["stages"])
    if failed_total:
        click.echo(
            f"\n{failed_total} failed task(s) by reason "
            "(`semsql worker --retry-failed` queues them again):"
        )
    for reason in report["failure_reasons"]:
        click.echo(f"  {reason['tasks']} x {reason['stage']}: {reason['error']}")
        click.echo(f"      e.g. {reason['example']}")
