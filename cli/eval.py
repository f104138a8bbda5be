"""`semsql eval`: retrieval metrics on the user's own library, per signal and fused."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import psycopg

from semsql.cli.common import INTEGER_MAX, connect, echo_json, require_schema
from semsql.cli.errors import UserError, database_message
from semsql.cli.eval_report import as_json, html_page, per_query_table, summary_table
from semsql.eval_queries import (
    MAX_K,
    QrelsError,
    Searcher,
    caption_queries,
    parse_weights,
    read_qrels,
    summarise,
)


@click.command(name="eval")
@click.argument(
    "qrels", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--captions", is_flag=True, help="Use the user-written captions as queries.")
@click.option(
    "--sample", type=click.IntRange(1, 1_000_000), help="With --captions: this many of them."
)
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(0, INTEGER_MAX),
    help="With --sample: which captions (the same seed picks the same ones).",
)  # fmt: skip
@click.option(
    "-k", "k", default=10, show_default=True, type=click.IntRange(1, MAX_K),
    help="Depth of recall@k (a qrels line's own \"k\" wins).",
)  # fmt: skip
@click.option(
    "--weights", metavar="NAME=W,...",
    help="Also rank fused with these weights (image, text, keyword, name; each 0 to 1000).",
)  # fmt: skip
@click.option("--per-query", is_flag=True, help="Also print each query's P@10 and MRR.")
@click.option("--json", "as_json_flag", is_flag=True, help="Print everything as JSON.")
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write an HTML report with a bar chart to this file.",
)  # fmt: skip
@click.option(
    "--embed", type=click.Choice(["auto", "worker", "local"]), default="auto",
    show_default=True, envvar="SEMSQL_SEARCH_EMBED",
    help="Who turns queries into vectors: a running worker, this process, or the worker when "
    "one is running.",
)  # fmt: skip
@click.option("--device", default="cpu", show_default=True, envvar="SEMSQL_DEVICE")
def eval_command(
    qrels: Path | None, captions: bool, sample: int | None, seed: int, k: int,
    weights: str | None, per_query: bool, as_json_flag: bool, html_path: Path | None,
    embed: str, device: str,
) -> None:  # fmt: skip
    """Measure retrieval on this library: P@1, P@5, P@10, recall@k, MRR and nDCG@10 of each
    signal alone (image, text, keyword; the other weights 0) and fused, per query and mean.

    QRELS is a JSONL file, one query per line: {"query": "...", "relevant": [uri or asset id,
    ...]}, with optional "k", "article" and filters ("tags", "people", "collection",
    "emotions", "taken_after", "taken_before", "metadata", "exclude", "names", ...).
    A uri may be given as stored, relative to the file's folder, or as its end ("2019/a.jpg").

    --captions makes each user-written caption a query for its own asset, with that caption
    hidden from the keyword and text signals (in a transaction that is rolled back: nothing
    stored changes; it needs a role that may write), so that what the models saw (generated
    captions, tags, CLIP) must find it.

    \b
    Examples:
      semsql eval qrels.jsonl
      semsql eval qrels.jsonl --weights text=1,keyword=0.2 --html eval.html
      semsql eval --captions --sample 200 --seed 7 --json > captions.json
    """
    if (qrels is None) == (not captions):
        raise click.UsageError("give a QRELS file or --captions (one of them)")
    if sample is not None and not captions:
        raise click.UsageError("--sample goes with --captions")
    try:
        custom = parse_weights(weights) if weights else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--weights") from None
    with connect() as conn:
        require_schema(conn)
        try:
            queries = (
                read_qrels(conn, qrels, k) if qrels else caption_queries(conn, sample, seed, k)
            )
        except QrelsError as error:
            raise UserError(str(error)) from None
        conn.rollback()
        if not queries:
            raise UserError(
                "no user-written captions to use as queries "
                "(hint: a manifest's caption or an image's XMP description is one)"
            )
        searcher = Searcher(conn, embed=embed, device=device, custom_weights=custom)
        for signal, why in searcher.unavailable.items():
            click.echo(f"note: the {signal} signal is left out: {why}", err=True)
        reports = []
        with click.progressbar(
            queries, label="evaluating", file=sys.stderr, hidden=not sys.stderr.isatty()
        ) as bar:
            for item in bar:
                try:
                    reports.append(searcher.run(item))
                except psycopg.errors.InsufficientPrivilege as error:
                    if item.hidden_caption_of is None:
                        raise
                    raise UserError(
                        f"{database_message(error)} (hint: --captions hides each caption in a "
                        "transaction that it rolls back, which needs a role that may write "
                        "semsql's tables, such as semsql_worker)"
                    ) from None
    signals = searcher.signals
    summary = summarise(reports, signals)
    shown_k = k if all(r.query.k == k for r in reports) else None
    if html_path is not None:
        title = f"semsql eval: {qrels.name if qrels else 'user captions'}"
        try:
            html_path.write_text(
                html_page(title, reports, summary, searcher.unavailable, custom), encoding="utf-8"
            )
        except OSError as error:
            raise UserError(f"cannot write {html_path}: {error.strerror or error}") from None
        click.echo(f"wrote {html_path}", err=True)
    if as_json_flag:
        echo_json(as_json(reports, summary, searcher.unavailable, custom))
        return
    click.echo(summary_table(summary, len(reports), shown_k, custom))
    if per_query:
        click.echo()
        click.echo(per_query_table(reports, signals))
