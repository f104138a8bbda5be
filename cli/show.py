"""`semsql show ID`: what is known about one asset, and a video's frame strip."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import click

from semsql.cli.common import ROW_ID, connect, echo_json, fetch_dicts, require_schema
from semsql.cli.contact_sheet import thumbnail_data_uri
from semsql.cli.errors import UserError
from semsql.frames import Frame, asset_frames

ASSET = """SELECT a.id, a.uri, a.collection, a.media_type, a.mime, a.width, a.height, a.bytes,
                  a.duration_ms, a.taken_at, a.status, a.error, d.caption, d.labels AS tags,
                  d.emotions, d.people_names AS people,
                  (SELECT count(*) FROM semsql.faces f WHERE f.asset_id = a.id) AS faces
           FROM semsql.assets a LEFT JOIN semsql.search_documents d ON d.asset_id = a.id
           WHERE a.id = %s"""

STRIP = """<!doctype html><meta charset="utf-8"><title>{title}</title>
<style>body {{ font: 14px system-ui, sans-serif; margin: 1.5em; }}
.strip {{ display: flex; flex-wrap: wrap; gap: .8em; }}
figure {{ margin: 0; width: 240px; }} img {{ width: 240px; }}
.cut {{ color: #a40; }} small {{ color: #555; }}</style>
<h1>{title}</h1><p>{summary}</p><div class="strip">{frames}</div>"""


@click.command()
@click.argument("asset_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (frames without their JPEGs).")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a page with the video's frame strip.",
)
def show(asset_id: int, as_json: bool, html_path: Path | None) -> None:
    """Show one asset: where it is, what it is, its caption, tags and people; for a video, its
    frames (time, scene cut, caption, faces), the ones every image stage read.

    \b
    Examples:
      semsql show 42
      semsql show 42 --json | jq '.frames[].at_seconds'
      semsql show 42 --html strip.html
    """
    with connect() as conn:
        require_schema(conn)
        found = fetch_dicts(conn, ASSET, [asset_id])
        if not found:
            raise UserError(f"no asset has id {asset_id}")
        asset = found[0]
        frames = asset_frames(conn, asset_id) if asset["media_type"] == "video" else []
    if html_path is not None:
        html_path.write_text(strip_page(asset, frames), encoding="utf-8")
        click.echo(f"wrote {html_path}", err=True)
    if as_json:
        echo_json({**asset, "frames": [frame_facts(frame) for frame in frames]})
        return
    click.echo(describe(asset))
    for frame in frames:
        cut = " cut" if frame.scene_cut else ""
        faces = f"  {frame.faces} face(s)" if frame.faces else ""
        click.echo(f"  {frame.at}{cut:<4}  {frame.caption or ''}{faces}")


def frame_facts(frame: Frame) -> dict[str, Any]:
    return {
        "id": frame.id,
        "at_seconds": frame.at.total_seconds(),
        "scene_cut": frame.scene_cut,
        "width": frame.width,
        "height": frame.height,
        "caption": frame.caption,
        "faces": frame.faces,
    }


def describe(asset: dict[str, Any]) -> str:
    size = f"{asset['width']}x{asset['height']}" if asset["width"] else ""
    length = f", {asset['duration_ms'] / 1000:.1f} s" if asset["duration_ms"] is not None else ""
    lines = [
        f"{asset['id']}  {asset['uri']}",
        f"  {asset['media_type']} {asset['mime'] or ''} {size}{length}, {asset['status']}",
    ]
    for name in ("caption", "tags", "emotions", "people"):
        value = asset[name]
        if value:
            lines.append(f"  {name}: {value if isinstance(value, str) else ', '.join(value)}")
    if asset["faces"]:
        lines.append(f"  faces: {asset['faces']}")
    if asset["error"]:
        lines.append(f"  error: {asset['error']}")
    return "\n".join(lines)


def strip_page(asset: dict[str, Any], frames: list[Frame]) -> str:
    figures = []
    for frame in frames:
        source = thumbnail_data_uri(frame.jpeg) or ""
        cut = ' <span class="cut">scene cut</span>' if frame.scene_cut else ""
        faces = f", {frame.faces} face(s)" if frame.faces else ""
        figures.append(
            f'<figure><img src="{source}" alt="frame at {frame.at}"><figcaption>'
            f"{html.escape(str(frame.at))}{cut}{faces}<br>"
            f"<small>{html.escape(frame.caption or '')}</small></figcaption></figure>"
        )
    summary = describe(asset).replace("\n", " · ")
    return STRIP.format(
        title=html.escape(f"asset {asset['id']}"),
        summary=html.escape(summary),
        frames="\n".join(figures) or "<p>no frames</p>",
    )
