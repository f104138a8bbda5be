"""`semsql search`: find images by meaning, with filters, from the command line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import numpy as np
import psycopg

from semsql import limits
from semsql.cli.common import ROW_ID, FiniteFloatRange, connect, echo_json, require_schema
from semsql.cli.errors import UserError
from semsql.frames import moment_jpegs
from semsql.search import (
    SIMILAR_BY,
    SIMILAR_PRIORITIES,
    SearchHit,
    SearchRequest,
    SimilarHit,
    SimilarRequest,
    embed_image_file,
    embed_texts_locally,
    image_file_hashes,
    live_query_spaces,
    registered_spaces,
    run_moments,
    run_search,
    run_similar,
)
from semsql.segments import stored_segments

DATES = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])
MAX_OFFSET = 1_000_000_000
"""semsql.search's own bound on offset."""


@click.command()
@click.argument("query", required=False)
@click.option(
    "--image",
    "image_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Find images like this file (its CLIP vector is made here).",
)
@click.option(
    "--article",
    "article_source",
    metavar="FILE",
    help="Find images for an article (a file, or - for stdin): its known people, central "
    "sentences and keyphrases become the query.",
)
@click.option(
    "--summary-model",
    envvar="SEMSQL_ARTICLE_SUMMARY_MODEL",
    metavar="MODEL",
    help="With --article: a summarisation model (Hugging Face id or folder, loaded offline) "
    "whose summary replaces the extracted sentences.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Print what the search makes of QUERY or --article (names, parts and weights, "
    "keywords, exclusions) instead of searching.",
)
@click.option("--like", "like_asset", type=ROW_ID, metavar="ID", help="Find assets like this one.")
@click.option(
    "--by",
    type=click.Choice(SIMILAR_BY),
    help="With --image or --like: which index finds look-alikes: meaning (CLIP), content "
    "(perceptual hashes, rotations and mirrors included; no model) or both, fused.",
)
@click.option(
    "--priority",
    type=click.Choice(SIMILAR_PRIORITIES),
    help="With --by both: hits of both indexes first (both_first, the default), or those of one.",
)
@click.option(
    "--split",
    type=FiniteFloatRange(0, 1),
    help="With --by both: the share of the slots for semantic hits (0 to 1, default 0.5).",
)
@click.option(
    "--face",
    "face_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Find the images showing the person in this photo, best face first.",
)
@click.option("--pick", help="With --face: which face when the photo shows several.")
@click.option("--tag", "tags", multiple=True, help="Only assets with this tag (repeat: any).")
@click.option("--all-tags", is_flag=True, help="With several --tag: only assets with all.")
@click.option("--emotion", "emotions", multiple=True, help="Only assets with a face showing it.")
@click.option("--person", "people", multiple=True, help="Only assets showing this person.")
@click.option("--all-people", is_flag=True, help="With several --person: only assets with all.")
@click.option("--collection", help="Only assets of this collection.")
@click.option("--after", type=DATES, metavar="DATE", help="Taken at or after this date.")
@click.option("--before", type=DATES, metavar="DATE", help="Taken before this date.")
@click.option("--metadata", metavar="JSON", help="Only assets whose metadata contains this object.")
@click.option(
    "--media-type", type=click.Choice(["image", "video"]), help="Only images, or only videos."
)
@click.option(
    "--min-duration",
    type=FiniteFloatRange(0, 1e9),
    metavar="SECONDS",
    help="Only videos at least this long.",
)
@click.option(
    "--max-duration",
    type=FiniteFloatRange(0, 1e9),
    metavar="SECONDS",
    help="Only videos at most this long.",
)
@click.option(
    "--moments",
    is_flag=True,
    help="Video frames like QUERY or --image, several per video, with their times.",
)
@click.option("--exclude", metavar="TEXT", help="Push away what this text means.")
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0, MAX_OFFSET))
@click.option("--min-score", type=FiniteFloatRange(), help="Drop results scoring below this.")
@click.option(
    "--relative-cut",
    type=FiniteFloatRange(0, 1),
    help="Drop results scoring below this share of the best one.",
)
@click.option("--order", type=click.Choice(["relevance", "newest", "oldest"]), default="relevance")
@click.option("--exact", is_flag=True, help="Exact scan instead of HNSW (slower, for checks).")
@click.option(
    "--names",
    type=click.Choice(["filter", "boost", "off"]),
    default="filter",
    show_default=True,
    help="What names of people in QUERY do.",
)
@click.option(
    "--embed",
    type=click.Choice(["auto", "worker", "local"]),
    default="auto",
    show_default=True,
    envvar="SEMSQL_SEARCH_EMBED",
    help="Who turns QUERY into vectors: a running worker, this process, or the worker when "
    "one is running.",
)
@click.option("--device", default="cpu", show_default=True, envvar="SEMSQL_DEVICE")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a contact sheet of thumbnails to this file.",
)
@click.pass_context
def search(
    ctx: click.Context, query: str | None, image_path: Path | None, article_source: str | None,
    summary_model: str | None, explain: bool, like_asset: int | None, by: str | None,
    priority: str | None, split: float | None, face_path: Path | None, pick: str | None,
    tags: tuple[str, ...],
    all_tags: bool, emotions: tuple[str, ...], people: tuple[str, ...], all_people: bool,
    collection: str | None, after: datetime | None, before: datetime | None,
    metadata: str | None, media_type: str | None, min_duration: float | None,
    max_duration: float | None, moments: bool, exclude: str | None, limit: int, offset: int,
    min_score: float | None, relative_cut: float | None, order: str, exact: bool, names: str,
    embed: str, device: str, as_json: bool, html_path: Path | None,
) -> None:  # fmt: skip
    """Search the assets by meaning: QUERY text, an --image file or an asset --like ID,
    with exact filters. Without any of them: the filtered assets, newest first.

    \b
    Examples:
      semsql search "children playing in snow"
      semsql search "dog on a beach" --tag summer --after 2023-01-01 -n 10
      semsql search "Ana at the beach"             # a known name becomes a person filter
      semsql search "a cat" --exclude indoors --html cats.html
      semsql search --image ~/Pictures/cat.jpg
      semsql search --like 42 --json | jq '.[].uri'
      semsql search --image scan.jpg --by content  # copies, resized, rotated: no model
      semsql search --like 42 --by both --priority semantic_first --split 0.7
      semsql search --face visitor.jpg             # images showing that person
      semsql search --person "Joe Park" --emotion happy --order newest
      semsql search "goal celebration" --media-type video --min-duration 10
      semsql search "a cat on a sofa" --moments    # every scene, with its time
      semsql search --article story.txt -n 10      # images for an article
      pbpaste | semsql search --article - --explain
    """
    if face_path is not None:
        from semsql.cli.people import find_face

        others = [query, image_path, like_asset, *tags, *emotions, *people, collection, after,
                  before, metadata, media_type, min_duration, max_duration, exclude]  # fmt: skip
        if any(other for other in others):
            raise click.UsageError("--face searches by the face alone: drop QUERY and filters")
        ctx.invoke(find_face, image=face_path, k=limit, pick=pick, as_json=as_json)
        return
    if moments:
        _moments(query, image_path, collection, limit, device, as_json)
        return
    if by is not None or priority is not None or split is not None:
        filters = (query, article_source, *tags, *emotions, *people, collection, after, before,
                   metadata, media_type, min_duration, max_duration, exclude, offset, min_score,
                   relative_cut, exact)  # fmt: skip
        _similar(by, priority, split, image_path, like_asset, filters, limit, device, as_json,
                 html_path)  # fmt: skip
        return
    article, article_summary = _article(query, article_source, summary_model, device)
    if explain:
        _print_explanation(query, article, article_summary, exclude, names, people, as_json)
        return
    request = SearchRequest(
        query=query,
        article=article,
        article_summary=article_summary,
        like_asset=like_asset,
        tags=tags,
        tags_match="all" if all_tags else None,
        emotions=emotions,
        people=people,
        people_match="all" if all_people else None,
        collection=collection,
        taken_after=after,
        taken_before=before,
        metadata=_json_object(metadata),
        media_type=media_type,
        min_duration=None if min_duration is None else timedelta(seconds=min_duration),
        max_duration=None if max_duration is None else timedelta(seconds=max_duration),
        exclude=exclude,
        k=limit,
        offset=offset,
        min_score=min_score,
        relative_cut=relative_cut,
        order_by=order,
        exact=exact or None,
        names=names,
    )
    with connect() as conn:
        require_schema(conn)
        if image_path is not None:
            request = _with_image_vector(request, image_path, device)
        elif query and embed != "worker":
            request = _with_local_text_vectors(conn, request, embed, device)
        hits, notices = run_search(conn, request)
        segments = stored_segments(conn, [hit.asset_id for hit in hits]) if html_path else {}
        frames = _best_frames(conn, hits) if html_path else {}
    for notice in notices:
        click.echo(f"note: {notice}", err=True)
    if html_path is not None:
        from semsql.cli.contact_sheet import write_contact_sheet

        title = (
            query
            or (f"article {article_source}" if article_source else None)
            or (f"like {image_path.name}" if image_path else f"like asset {like_asset}")
        )
        write_contact_sheet(html_path, hits, title or "semsql search", segments, frames)
        click.echo(f"wrote {html_path}", err=True)
    if as_json:
        echo_json([asdict(hit) for hit in hits])
    elif not hits:
        click.echo("no matches")
    else:
        click.echo(format_table(hits))


def _moments(
    query: str | None, image_path: Path | None, collection: str | None, limit: int,
    device: str, as_json: bool,
) -> None:  # fmt: skip
    """`--moments`: semsql.search_moments, by the query text (a running worker embeds it) or
    the CLIP vector of --image, made here."""
    if (query is None) == (image_path is None):
        raise click.UsageError("--moments takes QUERY or --image")
    vector = None
    if image_path is not None:
        vector = _with_image_vector(SearchRequest(), image_path, device).image_embedding
    with connect() as conn:
        require_schema(conn)
        found, notices = run_moments(
            conn, query=query, image_embedding=vector, k=limit, collection=collection
        )
    for notice in notices:
        click.echo(f"note: {notice}", err=True)
    if as_json:
        echo_json([{**asdict(m), "at": m.at.total_seconds()} for m in found])
    elif not found:
        click.echo("no matching moments")
    for moment in [] if as_json else found:
        caption = f"  {moment.caption}" if moment.caption else ""
        click.echo(f"{moment.rank:>3} {moment.similarity:.3f}  {moment.uri} @ {moment.at}{caption}")


def _best_frames(
    conn: psycopg.Connection, hits: Sequence[SearchHit | SimilarHit]
) -> dict[int, tuple[bytes, timedelta]]:
    """The frame each video hit is shown by: its best moment's."""
    videos = [(hit.asset_id, hit.best_at) for hit in hits if hit.media_type == "video"]
    return moment_jpegs(conn, videos)


def _article(
    query: str | None, source: str | None, summary_model: str | None, device: str
) -> tuple[str | None, str | None]:
    """The article's text, and its summary when a summarisation model is configured."""
    if source is None:
        return None, None
    if query:
        raise click.UsageError("give QUERY or --article, not both")
    from semsql.articles import ArticleError, read_article, summarise

    try:
        article = read_article(source)
        if not summary_model:
            return article, None
        _check_device(device)
        click.echo(f"summarising the article with {summary_model}", err=True)
        return article, summarise(article, summary_model, device)
    except ArticleError as error:
        raise UserError(str(error)) from None


def _print_explanation(
    query: str | None, article: str | None, article_summary: str | None, exclude: str | None,
    names: str, people: tuple[str, ...], as_json: bool,
) -> None:  # fmt: skip
    from semsql.articles import explain as explain_query

    if not query and not article:
        raise click.UsageError("--explain needs QUERY or --article")
    with connect() as conn:
        require_schema(conn)
        rows, notices = explain_query(
            conn, query=query, article=article, article_summary=article_summary,
            exclude=exclude, names=names, people=list(people),
        )  # fmt: skip
    for notice in notices:
        click.echo(f"note: {notice}", err=True)
    if as_json:
        echo_json([asdict(row) for row in rows])
        return
    click.echo(f"{'kind':<8} {'weight':>6}  item / detail")
    for row in rows:
        weight = "" if row.weight is None else f"{row.weight:.2f}"
        click.echo(f"{row.kind:<8} {weight:>6}  {row.item or ''}")
        if row.detail:
            click.echo(f"{'':<8} {'':>6}    {row.detail}")


def _similar(
    by: str | None, priority: str | None, split: float | None, image_path: Path | None,
    like_asset: int | None, filters: Sequence[object], limit: int, device: str, as_json: bool,
    html_path: Path | None,
) -> None:  # fmt: skip
    """--by: semsql.similar (--like) or semsql.similar_to (--image, hashed and embedded here)."""
    from semsql.decode import InputError
    from semsql.embedder.models import ModelLoadError

    if by is None:
        raise click.UsageError("--priority and --split fuse two indexes: add --by both")
    if (priority is not None or split is not None) and by != "both":
        raise click.UsageError("--priority and --split need --by both")
    if (image_path is None) == (like_asset is None):
        raise click.UsageError("--by needs --image FILE or --like ID (one of them)")
    if any(filters):
        raise click.UsageError("--by finds look-alikes alone: drop QUERY and filters")
    request = SimilarRequest(like_asset=like_asset, k=limit, by=by, priority=priority, split=split)
    if image_path is not None:
        hashes = vector = None
        try:
            if by != "semantic":
                hashes = image_file_hashes(image_path)
            if by != "content":
                vector = embed_image_file(image_path, device)
        except InputError as error:
            raise UserError(f"cannot read {image_path}: {error}") from None
        except ModelLoadError as error:
            if by == "semantic":
                raise UserError(f"cannot embed {image_path}: {error}") from None
            click.echo(f"note: no CLIP vector of {image_path.name} here: {error}", err=True)
        request = replace(request, like_asset=None, content_hashes=hashes, image_embedding=vector)
    with connect() as conn:
        require_schema(conn)
        hits, notices = run_similar(conn, request)
        frames = _best_frames(conn, hits) if html_path else {}
    for notice in notices:
        click.echo(f"note: {notice}", err=True)
    if html_path is not None:
        from semsql.cli.contact_sheet import write_contact_sheet

        source = image_path.name if image_path else f"asset {like_asset}"
        write_contact_sheet(html_path, hits, f"like {source}, by {by}", frames=frames)
        click.echo(f"wrote {html_path}", err=True)
    if as_json:
        echo_json([asdict(hit) for hit in hits])
    elif not hits:
        click.echo("no matches")
    else:
        click.echo(format_similar_table(hits))


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--metadata") from None
    except RecursionError:
        raise click.BadParameter("not JSON: nested too deeply", param_hint="--metadata") from None
    except ValueError as error:  # a number of too many digits
        raise click.BadParameter(f"not JSON: {error}", param_hint="--metadata") from None
    if not isinstance(value, dict):
        raise click.BadParameter("give a JSON object", param_hint="--metadata")
    warnings: list[str] = []
    limits.bound_depth(value, limits.MAX_METADATA_DEPTH, warnings)
    if warnings:  # no asset's metadata is nested this deep, so none could contain it
        raise click.BadParameter(
            f"nested deeper than {limits.MAX_METADATA_DEPTH} levels", param_hint="--metadata"
        )
    return value


def _with_image_vector(request: SearchRequest, path: Path, device: str) -> SearchRequest:
    from semsql.decode import InputError
    from semsql.embedder.models import ModelLoadError

    try:
        vector = embed_image_file(path, device)
    except (ModelLoadError, InputError) as error:
        raise UserError(f"cannot embed {path}: {error}") from None
    return _replace(request, image_embedding=vector)


def _with_local_text_vectors(
    conn: psycopg.Connection, request: SearchRequest, embed: str, device: str
) -> SearchRequest:
    """Vectors of the query for the spaces that no running worker answers (auto), or all."""
    if request.query is None:
        return request
    # What the server would refuse, before any model loads for it.
    conn.execute(
        "SELECT semsql.check_query_text('text', %s), semsql.check_query_text('text', %s)",
        [request.query, request.exclude],
    )
    spaces = registered_spaces(conn)
    wanted = set(spaces) if embed == "local" else set(spaces) - live_query_spaces(conn)
    if not wanted:
        return request
    _check_device(device)
    click.echo(f"embedding the query here ({', '.join(sorted(wanted))})", err=True)
    dims = {space: dims for space, (_, dims) in spaces.items()}
    vectors, problems = embed_texts_locally(request.query, sorted(wanted), dims, device)
    for space, problem in problems.items():
        click.echo(f"note: the {space} signal is left to the server: {problem}", err=True)
    return _replace(
        request,
        text_embedding=vectors.get("text"),
        image_embedding=vectors.get("image"),
    )


def _check_device(device: str) -> None:
    """Raises DeviceError (one line, in cli/errors.py) for a device this machine lacks."""
    try:
        from semsql.embedder.models.device import resolve_device
    except ModuleNotFoundError:
        return  # no torch: embedding says so, for each space
    resolve_device(device)


def _replace(request: SearchRequest, **changes: np.ndarray | None) -> SearchRequest:
    given: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
    return replace(request, **given)


def format_table(hits: list[SearchHit]) -> str:
    width = shutil.get_terminal_size((120, 24)).columns
    lines = [f"{'#':>3} {'score':>6} {'id':>7}  {'matched by':<20} caption / uri"]
    for hit in hits:
        score = "" if hit.score is None else f"{hit.score:.3f}"
        text = hit.caption or ", ".join(hit.tags) or ""
        head = f"{hit.rank:>3} {score:>6} {hit.asset_id:>7}  {','.join(hit.matched_by):<20} "
        room = max(20, width - len(head))
        lines.append(head + _clip(text, room))
        lines.append(" " * len(head) + _clip(_where(hit), room))
    return "\n".join(lines)


def _where(hit: SearchHit | SimilarHit) -> str:
    """The uri, and for a video the moment that matched: `clip.mp4 @ 0:00:12`."""
    return hit.uri if hit.best_at is None else f"{hit.uri} @ {hit.best_at}"


def format_similar_table(hits: list[SimilarHit]) -> str:
    width = shutil.get_terminal_size((120, 24)).columns
    lines = [f"{'#':>3} {'score':>6} {'id':>7}  {'found by':<9} {'bits':>4}  caption / uri"]
    for hit in hits:
        score = "" if hit.score is None else f"{hit.score:.3f}"
        bits = "" if hit.content_distance is None else str(hit.content_distance)
        text = hit.caption or ", ".join(hit.tags) or ""
        head = f"{hit.rank:>3} {score:>6} {hit.asset_id:>7}  {hit.matched_by:<9} {bits:>4}  "
        room = max(20, width - len(head))
        lines.append(head + _clip(text, room))
        lines.append(" " * len(head) + _clip(_where(hit), room))
    return "\n".join(lines)


def _clip(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1] + "…"
