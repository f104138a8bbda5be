"""`semsql worker`: the embedder daemon."""

from __future__ import annotations

import logging
from datetime import timedelta

import click

from semsql import database
from semsql.cli.common import FiniteFloatRange, connect, require_schema
from semsql.cli.errors import UserError
from semsql.stages import NAMES as STAGE_NAMES
from semsql.stages import SPACES
from semsql.video import Sampling


def _stages(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter(
            f"give at least one stage: all, or some of {', '.join(STAGE_NAMES)}"
        )
    if names == ["all"]:
        return STAGE_NAMES
    unknown = [name for name in names if name not in STAGE_NAMES]
    if unknown:
        raise click.BadParameter(
            f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGE_NAMES)}"
        )
    return tuple(names)


@click.command()
@click.option("--once", is_flag=True, help="Run what is due now, then exit.")
@click.option(
    "--until-idle",
    is_flag=True,
    help="Run until no task of its stages is pending or running, then exit.",
)
@click.option(
    "--poll-interval",
    type=FiniteFloatRange(0.01, 3600),
    default=5.0,
    show_default=True,
    envvar="SEMSQL_WORKER_POLL_INTERVAL",
    metavar="SECONDS",
    help="Look at the queue this often even without a NOTIFY.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=16,
    show_default=True,
    envvar="SEMSQL_WORKER_BATCH_SIZE",
    help="Tasks per model call (GPU: try 64).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    envvar="SEMSQL_DEVICE",
    help="auto, cpu, cuda, cuda:N or mps (fp16 on CUDA).",
)
@click.option(
    "--tasks",
    "stages",
    default="all",
    show_default=True,
    callback=_stages,
    envvar="SEMSQL_WORKER_TASKS",
    metavar="STAGES",
    help=f"Comma-separated stages to run: {', '.join(STAGE_NAMES)}.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Queue the failed tasks of these stages again before starting.",
)
@click.option(
    "--reset-space",
    "reset_spaces",
    multiple=True,
    type=click.Choice(sorted(SPACES)),
    help="Delete the space's vectors of another model and embed those assets again.",
)
@click.option(
    "--queries/--no-queries",
    "answer_queries",
    default=True,
    show_default=True,
    help="Answer semsql.embed_text requests with the text and CLIP models.",
)
@click.option(
    "--listen/--no-listen",
    default=True,
    show_default=True,
    envvar="SEMSQL_WORKER_LISTEN",
    help="Wake on NOTIFY; --no-listen only polls (for a pooler in transaction mode).",
)
@click.option(
    "--decode-threads",
    type=click.IntRange(1, 256),
    envvar="SEMSQL_WORKER_DECODE_THREADS",
    help="Threads that decode images while the model runs [default: min(4, CPUs)].",
)
@click.option(
    "--lease",
    "lease_s",
    type=click.IntRange(5, 86_400),
    default=120,
    show_default=True,
    envvar="SEMSQL_WORKER_LEASE",
    metavar="SECONDS",
    help="A task held longer without a heartbeat may be claimed by another worker.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    envvar="SEMSQL_WORKER_MAX_ATTEMPTS",
    help="Attempts before a task that keeps failing transiently is marked failed.",
)
@click.option(
    "--bulk-index-at",
    type=click.IntRange(0, 100_000_000),
    default=5000,
    show_default=True,
    envvar="SEMSQL_WORKER_BULK_INDEX_AT",
    metavar="TASKS",
    help="With this many vectors to write (and at least a quarter of what the space holds), "
    "drop the space's HNSW index, write them, then build it again: several times faster. "
    "Searches in that space scan exactly meanwhile. 0: index row by row always.",
)
@click.option(
    "--frame-every",
    type=FiniteFloatRange(0.1, 3600),
    default=Sampling.every,
    show_default=True,
    envvar="SEMSQL_FRAME_EVERY",
    metavar="SECONDS",
    help="Videos: a frame this often, plus one at each scene cut.",
)
@click.option(
    "--max-frames",
    type=click.IntRange(1, 10_000),
    default=Sampling.max_frames,
    show_default=True,
    envvar="SEMSQL_MAX_FRAMES",
    help="Videos: at most this many frames each, spread over a long one.",
)
@click.option("--name", envvar="SEMSQL_WORKER_NAME", help="Worker name [default: host:pid:random].")
@click.option("-v", "--verbose", is_flag=True, help="Log every batch.")
def worker(
    once: bool, until_idle: bool, poll_interval: float, batch_size: int, device: str,
    stages: tuple[str, ...], retry_failed: bool, reset_spaces: tuple[str, ...],
    answer_queries: bool, listen: bool, decode_threads: int | None, lease_s: int,
    max_attempts: int, bulk_index_at: int, frame_every: float, max_frames: int,
    name: str | None, verbose: bool,
) -> None:  # fmt: skip
    """Fill captions, tags, faces, emotions and vectors for new and changed assets.

    Claims queued tasks in batches (FOR UPDATE SKIP LOCKED), at start, on every NOTIFY
    and every poll interval, and answers semsql.embed_text. Run as many as you like, on
    as many machines. SIGTERM finishes the batch in hand, gives back the rest, exits 0.

    Each stage's model is a Hugging Face id or a local folder, set by SEMSQL_MODEL_<STAGE>
    (SEMSQL_MODEL_CAPTION, ..._TAGS, ..._FACES, ..._FACE_VECTORS, ..._EMOTION, ..._CLIP,
    ..._TEXT, ..._SEGMENTS), `on` (its default) or `off`. The segments stage is off unless
    its setting is given; a worker started with it turns it on for every asset. A stage
    whose model is off or cannot load is reported once as not
    available (`semsql status` shows why and how to fix it) and its tasks wait, the assets
    ready without it; the other stages go on. A worker that loads the model later fills
    the waiting tasks in, with no --retry-failed.

    \b
    Examples:
      semsql worker                              # all stages, until stopped
      semsql worker --until-idle                 # catch up, then exit (cron, CI)
      semsql worker --tasks faces,emotion --device cuda:1 --batch-size 64
      SEMSQL_MODEL_CAPTION=off semsql worker     # no captions on this machine
      SEMSQL_MODEL_SEGMENTS=on semsql worker     # segmentation labels (SegFormer), off by default
      SEMSQL_MODEL_TEXT=./models/minilm semsql worker --reset-space text
      semsql worker --retry-failed --once        # try the failed tasks again
      semsql worker --bulk-index-at 0            # keep the HNSW indexes up at all times
      semsql worker --frame-every 5 --max-frames 60   # fewer video frames, less model time
    """
    _configure_logging(verbose)
    from semsql.embedder.models.device import DeviceError
    from semsql.embedder.queue import QueueSettings
    from semsql.embedder.worker import Worker, WorkerOptions

    options = WorkerOptions(
        stages=stages,
        batch_size=batch_size,
        poll_interval=poll_interval,
        once=once,
        until_idle=until_idle,
        retry_failed=retry_failed,
        device=device,
        answer_queries=answer_queries,
        listen=listen,
        reset_spaces=reset_spaces,
        bulk_index_at=bulk_index_at,
        name=name,
        queue=QueueSettings(lease=timedelta(seconds=lease_s), max_attempts=max_attempts),
        stage_options={"frames": {"every": frame_every, "max_frames": max_frames}},
    )
    if decode_threads:
        options.decode_threads = decode_threads
    with connect() as conn:
        require_schema(conn)
    daemon = Worker(database.database_url(), options)
    try:
        daemon.run()
    except DeviceError as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if verbose:
        logging.getLogger("semsql.embedder").setLevel(logging.DEBUG)
    for noisy in ("httpx", "huggingface_hub", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
