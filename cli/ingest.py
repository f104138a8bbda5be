"""`semsql ingest`: add images from folders, files, URLs and catalog manifests."""

from __future__ import annotations

import contextlib
import itertools
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import click

from semsql import ingest as ingest_
from semsql import limits
from semsql.cli.common import FiniteFloatRange, connect, echo_json, require_schema
from semsql.cli.errors import UserError
from semsql.cli.jobs import skipped_by_reason
from semsql.cli.waiting import wait_for_job
from semsql.probe import DEFAULT_MAX_BYTES, DEFAULT_MAX_DURATION, DEFAULT_MAX_PIXELS
from semsql.sources import iter_candidates, iter_manifest_candidates

MAX_FILE_BYTES = 2**32
"""The largest --max-file-size: a file is read into memory whole, by several threads at once."""
MAX_PIXELS = 10**10
INTERRUPTS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While it lasts, SIGTERM and SIGINT raise ingest.Interrupted in the main thread: the job
    in progress is then marked failed, and the command exits with 128 + the signal's number."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set there
        return

    def interrupt(number: int, frame: object) -> None:
        raise ingest_.Interrupted(signal.Signals(number).name)

    previous = {number: signal.signal(number, interrupt) for number in INTERRUPTS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _interrupted(stop: ingest_.Interrupted, job_id: int | None, files_read: bool) -> UserError:
    if job_id is None:
        message = f"interrupted by {stop} before the job began"
    elif files_read:
        message = (
            f"interrupted by {stop}: job {job_id} has read its files and goes on "
            f"(`semsql jobs {job_id}` follows it)"
        )
    else:
        message = (
            f"interrupted by {stop}: job {job_id} is marked failed (the files stored before "
            f"stay stored; `semsql jobs {job_id}` lists them)"
        )
    return UserError(message, exit_code=128 + getattr(signal, stop.signal_name, signal.SIGTERM))


def _collection(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = limits.collection_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@click.command()
@click.argument("paths", nargs=-1)
@click.option("-r", "--recursive", is_flag=True, help="Walk sub-folders too.")
@click.option(
    "--glob",
    "pattern",
    metavar="PATTERN",
    help="Take the files whose name (or path below the folder) matches, "
    "instead of every file with an image extension.",
)
@click.option(
    "--collection",
    default="default",
    show_default=True,
    envvar="SEMSQL_COLLECTION",
    callback=_collection,
    help="Collection the assets belong to (duplicates are found per collection).",
)
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL or CSV catalog: uri, caption, tags, people, taken_at, title, metadata per row.",
)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Manifest rows must point inside this folder (default: the manifest's).",
)
@click.option(
    "--max-file-size",
    "max_bytes",
    type=click.IntRange(1, MAX_FILE_BYTES),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    envvar="SEMSQL_MAX_FILE_BYTES",
    help="Refuse files larger than this many bytes.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(1, MAX_PIXELS),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    envvar="SEMSQL_MAX_PIXELS",
    help="Refuse images with more pixels (decompression bombs).",
)
@click.option(
    "--max-duration",
    type=FiniteFloatRange(min=0, min_open=True, max=1e9),
    default=DEFAULT_MAX_DURATION,
    show_default=True,
    metavar="SECONDS",
    envvar="SEMSQL_MAX_DURATION",
    help="Refuse videos longer than this (videos need the video extra).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the running `semsql worker`s have enriched every new or changed asset.",
)
@click.option(
    "--timeout",
    type=FiniteFloatRange(min=0, min_open=True, max=1e9),
    metavar="SECONDS",
    help="With --wait: give up (exit 1) after this long [default: no limit].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job summary as JSON.")
def ingest(
    paths: tuple[str, ...],
    recursive: bool,
    pattern: str | None,
    collection: str,
    manifest: Path | None,
    root: Path | None,
    max_bytes: int,
    max_pixels: int,
    max_duration: float,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Add images to semsql: each call is a job with counts and a per-file error list.

    Unchanged files (same SHA-256) are skipped; a changed file at the same path updates its
    asset and queues its enrichment again. Captions, keywords, titles and people shown are
    read from EXIF/IPTC/XMP and from XMP sidecars (photo.xmp, photo.jpg.xmp), which win for
    the fields they set. Files that cannot be read are reported and the rest go on; files
    not read (sidecars, videos, other formats, HEIC without the heif extra) are counted as
    skipped, by reason.

    --wait needs a running `semsql worker` for the job's stages: when no live worker takes
    the stages that have work left for 10 s, it stops waiting and says so (the files stay
    stored; `semsql jobs ID` follows the job).

    SIGTERM or Ctrl-C stops it: the job is marked failed ("interrupted"), what was stored
    stays stored. A job whose `semsql ingest` was killed outright is marked failed by the
    next `semsql ingest` or `semsql jobs` (unless it had read all its files).

    Exit status: 0 when every file was stored or skipped (and, with --wait, enriched);
    1 when any file failed (the others are stored all the same), when the job failed, or
    when --wait gave up; 143 after SIGTERM, 130 after SIGINT.

    \b
    Examples:
      semsql ingest ~/Pictures -r
      semsql ingest ./shoot --glob '*.jpg' --collection holidays
      semsql ingest https://example.org/cat.jpg
      semsql ingest --manifest catalog.jsonl        # captions/tags/people from a DAM
      semsql ingest ~/Pictures -r --json | jq .errors
      semsql ingest new/ --wait --timeout 600       # a worker runs elsewhere
    """
    if not paths and manifest is None:
        raise click.UsageError("give at least one PATH or URL, or --manifest FILE")
    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    job_id: int | None = None
    files_read = False
    try:
        with _signals_interrupt():
            candidates = list(
                itertools.chain(
                    iter_candidates(list(paths), recursive=recursive, pattern=pattern),
                    iter_manifest_candidates(manifest, root=root) if manifest else (),
                )
            )
            options = ingest_.IngestOptions(
                collection=collection,
                max_bytes=max_bytes,
                max_pixels=max_pixels,
                max_duration=max_duration,
            )
            args = {
                "paths": list(paths),
                "recursive": recursive,
                "glob": pattern,
                "manifest": str(manifest) if manifest else None,
            }
            with connect() as conn:
                require_schema(conn)
                abandoned = ingest_.fail_abandoned_jobs(conn)
                job_id = ingest_.create_job(conn, collection, args)
                if not as_json:
                    for number in abandoned:
                        click.echo(
                            f"note: job {number} {ingest_.ABANDONED}: marked failed", err=True
                        )
                    click.echo(f"job {job_id}: {len(candidates)} file(s)", err=True)
                show_bar = sys.stderr.isatty() and not as_json
                with click.progressbar(
                    length=len(candidates), label="ingesting", file=sys.stderr, hidden=not show_bar
                ) as bar:
                    summary = ingest_.run_ingest(conn, job_id, candidates, options, bar.update)
                files_read = True
                waited = wait_for_job(conn, job_id, timeout, show_bar) if wait else None
    except ingest_.Interrupted as stop:
        raise _interrupted(stop, job_id, files_read) from None
    if waited is not None:
        summary.status = waited.status

    if as_json:
        echo_json(summary.as_dict())
    else:
        click.echo(
            f"job {job_id} {summary.status}: {summary.new} new, {summary.updated} updated, "
            f"{summary.skipped} skipped, {summary.failed} failed ({summary.seconds:.1f} s)"
        )
        if summary.skipped_reasons:
            click.echo(f"  skipped: {skipped_by_reason(summary.skipped_reasons)}")
        for error in summary.errors:
            click.echo(f"  {error['uri']}: {error['code']}: {error['error']}", err=True)
        if summary.status == "running" and not wait:
            click.echo(
                "enrichment is queued: `semsql worker` fills it; `semsql jobs "
                f"{job_id}` shows progress",
                err=True,
            )
    if waited is not None and waited.problem:
        raise UserError(waited.problem)
    if summary.failed or summary.status == "failed":
        raise SystemExit(1)
