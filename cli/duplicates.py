"""`semsql duplicates`: groups of duplicate assets with the copy to keep, and deleting the rows
of the other copies (never their files)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from semsql.cli.common import FiniteFloatRange, connect, echo_json, require_schema
from semsql.content_hash import BITS
from semsql.duplicates import (
    BY,
    MAX_COSINE_DISTANCE,
    SPACES,
    DeletedAsset,
    DuplicateGroup,
    DuplicateQuery,
    delete_assets,
    review,
)

FILES_UNTOUCHED = "asset rows only: no file on disk was touched"


@click.command()
@click.option(
    "--by",
    type=click.Choice(BY),
    default="content",
    show_default=True,
    help="content: the perceptual hash (no model needed; finds resized, re-encoded, cropped, "
    "rotated and mirrored copies). semantic: CLIP vectors (look-alikes).",
)
@click.option(
    "--max-distance",
    type=FiniteFloatRange(0, BITS),
    help=f"Link copies this close. content: Hamming bits of the {BITS}-bit hash (default "
    "semsql.default_content_distance(), 40); semantic: cosine distance, 0 to 2 (default 0.05).",
)
@click.option("--collection", help="Only assets of this collection.")
@click.option(
    "--space",
    type=click.Choice(SPACES),
    default="image",
    show_default=True,
    help="With --by semantic: the vectors compared.",
)
@click.option(
    "--neighbours",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="How many nearest assets each asset is compared with.",
)
@click.option(
    "--keep",
    type=click.Choice(["best"]),
    default="best",
    show_default=True,
    help="Which copy of each group to keep: the most pixels, then bytes, the earliest date "
    "taken, the most user metadata, the earliest ingest.",
)
@click.option(
    "--delete-others",
    is_flag=True,
    help="Delete the asset rows of every copy but the kept one (files on disk stay).",
)
@click.option("--dry-run", is_flag=True, help="With --delete-others: list, delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups (or deletions) as JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a page with each group's thumbnails side by side to this file.",
)
def duplicates(
    by: str, max_distance: float | None, collection: str | None, space: str, neighbours: int,
    keep: str, delete_others: bool, dry_run: bool, as_json: bool, html_path: Path | None,
) -> None:  # fmt: skip
    """Find groups of duplicate assets and the best copy of each to keep.

    Deleting removes the other copies' rows from semsql (their captions, tags, faces, vectors,
    hashes, tasks) and never a file: the files stay where they are.

    \b
    Examples:
      semsql duplicates                           # exact and near-exact copies, by content
      semsql duplicates --max-distance 20 --collection trips --html dupes.html
      semsql duplicates --by semantic --max-distance 0.02 --json
      semsql duplicates --keep best --delete-others --dry-run    # what would be deleted
      semsql duplicates --keep best --delete-others              # delete those asset rows
    """
    if dry_run and not delete_others:
        raise click.UsageError("--dry-run goes with --delete-others")
    if by == "semantic" and max_distance is not None and max_distance > MAX_COSINE_DISTANCE:
        raise click.BadParameter(
            f"{max_distance:g} is not a cosine distance (0 to 2) for --by semantic",
            param_hint="--max-distance",
        )
    query = DuplicateQuery(by, max_distance, collection, space, neighbours)
    with connect() as conn:
        require_schema(conn)
        # One transaction: what is deleted is what was reviewed. The page first: a page that
        # cannot be written deletes nothing.
        with conn.transaction():
            groups = review(conn, query)
            if html_path is not None:
                from semsql.cli.duplicate_sheet import write_duplicate_sheet

                write_duplicate_sheet(html_path, groups, by, f"semsql duplicates --by {by}")
                click.echo(f"wrote {html_path}", err=True)
            others = [copy.asset_id for group in groups for copy in group.others]
            deleted = delete_assets(conn, others) if delete_others and not dry_run else []
    if delete_others:
        report_deletion(groups, deleted, dry_run, as_json)
    elif as_json:
        echo_json([{"group_id": g.group_id, "copies": list(map(asdict, g.copies))} for g in groups])
    elif not groups:
        click.echo("no duplicates")
    else:
        click.echo(format_groups(groups, by))
        count = sum(len(group.others) for group in groups)
        click.echo(
            f"\n{len(groups)} group(s); {count} other cop(ies) to delete with "
            "`semsql duplicates --keep best --delete-others` (add --dry-run to list them)"
        )


def format_groups(groups: list[DuplicateGroup], by: str) -> str:
    from semsql.cli.duplicate_sheet import copy_details

    unit = " bits" if by == "content" else ""
    lines = ["(distance: to the group's first asset; kind exact: the same file)"]
    for group in groups:
        lines.append(f"group {group.group_id}: {len(group.copies)} copies")
        for copy in group.copies:
            verdict = "keep " if copy.keep else "other"
            kind = "first" if copy.asset_id == copy.group_id else copy.kind
            lines.append(
                f"  {verdict} {copy.asset_id:>7}  {kind:<5} {copy.distance:>6g}{unit}  "
                f"{copy_details(copy)}"
            )
            lines.append(f"        {copy.uri}")
            lines.append(f"        {copy.reason}")
    return "\n".join(lines)


def report_deletion(
    groups: list[DuplicateGroup], deleted: list[DeletedAsset], dry_run: bool, as_json: bool
) -> None:
    kept_of = {copy.asset_id: group.kept for group in groups for copy in group.others}
    kept_id = {asset_id: kept.asset_id for asset_id, kept in kept_of.items()}
    chosen = [copy for group in groups for copy in group.others]
    if as_json:
        done = {asset.asset_id for asset in deleted}
        echo_json(
            {
                "dry_run": dry_run,
                "deleted" if not dry_run else "would_delete": [
                    {"asset_id": c.asset_id, "uri": c.uri, "kept_asset_id": kept_id[c.asset_id]}
                    for c in chosen
                    if dry_run or c.asset_id in done
                ],
                "kept": [{"asset_id": g.kept.asset_id, "uri": g.kept.uri} for g in groups],
                "files_on_disk": "untouched",
            }
        )
        return
    if dry_run:
        click.echo(f"would delete {len(chosen)} asset row(s) ({FILES_UNTOUCHED}):")
        for copy in chosen:
            click.echo(f"  {copy.asset_id:>7}  {copy.uri}  (keeping {kept_of[copy.asset_id].uri})")
        return
    click.echo(f"deleted {len(deleted)} asset row(s) ({FILES_UNTOUCHED}):")
    for asset in deleted:
        click.echo(f"  {asset.asset_id:>7}  {asset.uri}  (kept {kept_of[asset.asset_id].uri})")
