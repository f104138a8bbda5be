"""`semsql ingest --wait`: wait for a job's enrichment, but never for a worker that is not there."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import click
import psycopg

from semsql.database import fetch_row

POLL_S = 0.5
NO_WORKER_GRACE_S = 10.0
"""How long the wait goes on while no live worker runs a stage that has work left: a worker
registers only once its models are loaded, so one just started is given that long."""

# The job's tasks (those of its new and changed assets); the stages with unfinished ones that
# no live worker runs or reports unavailable (such a worker makes them wait soon); and the
# stages whose tasks wait for a model that is not available.
PROGRESS_QUERY = """
    SELECT j.status,
           count(t.*) AS total,
           count(t.*) FILTER (WHERE t.status IN ('done', 'failed', 'waiting')) AS finished,
           coalesce(array_agg(DISTINCT t.stage ORDER BY t.stage) FILTER (
               WHERE t.status IN ('pending', 'running')
                 AND NOT EXISTS (SELECT 1 FROM semsql.live_workers() w
                                 WHERE t.stage = ANY (w.stages) OR w.problems ? t.stage)),
                    '{}') AS unserved,
           coalesce(array_agg(DISTINCT t.stage ORDER BY t.stage) FILTER (
               WHERE t.status = 'waiting'), '{}') AS waiting
    FROM semsql.jobs j
    LEFT JOIN semsql.job_items ji ON ji.job_id = j.id AND ji.outcome IN ('new', 'updated')
    LEFT JOIN semsql.tasks t ON t.asset_id = ji.asset_id
    WHERE j.id = %s GROUP BY j.status"""


@dataclass(frozen=True)
class WaitOutcome:
    status: str
    """The job's status when the wait ended: completed, failed, or still running."""
    problem: str | None = None
    """Why the wait gave up, when it did."""


def wait_for_job(
    conn: psycopg.Connection, job_id: int, timeout: float | None, show_bar: bool
) -> WaitOutcome:
    """Poll the job until its assets are enriched, `timeout` seconds pass, or no worker has
    run its remaining stages for NO_WORKER_GRACE_S. Tasks that wait for a model that is not
    available do not hold the job back: it completes, and a note names their stages."""
    started = time.monotonic()
    unserved_since: float | None = None
    with click.progressbar(
        length=1, label="enriching", file=sys.stderr, hidden=not show_bar
    ) as bar:
        while True:
            status, total, finished, unserved, waiting = fetch_row(conn, PROGRESS_QUERY, [job_id])
            conn.commit()
            bar.length = max(total, 1)
            bar.update(finished - bar.pos)
            if status in ("completed", "failed"):
                if waiting:
                    click.echo(
                        f"note: the {', '.join(waiting)} tasks of job {job_id} wait for a model "
                        "that is not available (`semsql status` says why and how to fix it); "
                        "its assets are ready without them",
                        err=True,
                    )
                return WaitOutcome(status)
            now = time.monotonic()
            progress = f"{finished} of {total} tasks done; `semsql jobs {job_id}` shows progress"
            if timeout is not None and now - started >= timeout:
                return WaitOutcome(
                    status, f"job {job_id} is not enriched after {timeout:g} s ({progress})"
                )
            if not unserved:
                unserved_since = None
            elif unserved_since is None:
                unserved_since = now
                click.echo(
                    f"note: no running `semsql worker` takes the {', '.join(unserved)} tasks; "
                    f"waiting {NO_WORKER_GRACE_S:g} s for one",
                    err=True,
                )
            elif now - unserved_since >= NO_WORKER_GRACE_S:
                return WaitOutcome(
                    status,
                    f"no `semsql worker` is running the {', '.join(unserved)} tasks of job "
                    f"{job_id}: start one to enrich its assets ({progress})",
                )
            time.sleep(POLL_S)
