"""`semsql duplicates --html FILE`: one page, each group's copies side by side with the one to
keep marked. Thumbnails come from the search contact sheet (embedded JPEGs for local files,
links for URLs); every text on the page is escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from semsql.cli.contact_sheet import picture
from semsql.duplicates import DuplicateCopy, DuplicateGroup

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.2em; }} h2 {{ font-size: 1em; margin: 1.5em 0 .5em; }}
.group {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; width: 240px; border: 2px solid #ddd; border-radius: 6px; padding: .5em; }}
figure.keep {{ border-color: #2a8a3a; }}
img, .missing {{ width: 100%; height: 200px; object-fit: contain; background: #f4f4f4; }}
.missing {{ display: flex; align-items: center; justify-content: center; color: #888; }}
figcaption {{ margin-top: .4em; line-height: 1.35; word-break: break-word; }}
.verdict {{ font-weight: 600; }} .keep .verdict {{ color: #2a8a3a; }}
.reason {{ color: #555; }} .uri {{ color: #888; font-size: .85em; }}
</style></head>
<body><h1>{title}</h1><p>{summary}</p>
{groups}
</body></html>
"""

GROUP = """<h2>{heading}</h2>
<div class="group">
{figures}
</div>"""

FIGURE = """<figure class="{css}">{picture}<figcaption>
<span class="verdict">{verdict}</span> &middot; asset {asset_id} &middot; {kind}<br>
{details}<br><span class="reason">{reason}</span><br><span class="uri">{uri}</span>
</figcaption></figure>"""


def copy_details(copy: DuplicateCopy) -> str:
    """Size, bytes, date taken and user facts of a copy, in one line (also the CLI's)."""
    size = f"{copy.width}x{copy.height}" if copy.width and copy.height else "size unknown"
    taken = f"taken {copy.taken_at:%Y-%m-%d}" if copy.taken_at else "date unknown"
    stored = "bytes unknown" if copy.bytes is None else f"{copy.bytes:,} bytes"
    return f"{size}, {stored}, {taken}, {copy.user_facts} user fact(s)"


def figure(copy: DuplicateCopy, by: str) -> str:
    unit = "bits" if by == "content" else "cosine"
    kind = "the group's first" if copy.asset_id == copy.group_id else copy.kind
    return FIGURE.format(
        css="keep" if copy.keep else "other",
        picture=picture(copy.uri),
        verdict="keep" if copy.keep else "other copy",
        asset_id=copy.asset_id,
        kind=html.escape(f"{kind}, distance {copy.distance:g} {unit}"),
        details=html.escape(copy_details(copy)),
        reason=html.escape(copy.reason),
        uri=html.escape(copy.uri),
    )


def write_duplicate_sheet(
    path: Path, groups: Sequence[DuplicateGroup], by: str, title: str
) -> None:
    copies = sum(len(group.copies) for group in groups)
    summary = (
        f"{len(groups)} group(s), {copies} assets; the copy to keep has a green frame. "
        "Deleting the others removes their rows from semsql, never their files."
    )
    sections = [
        GROUP.format(
            heading=html.escape(f"group {group.group_id}: {len(group.copies)} copies"),
            figures="\n".join(figure(copy, by) for copy in group.copies),
        )
        for group in groups
    ]
    page = PAGE.format(
        title=html.escape(title), summary=html.escape(summary), groups="\n".join(sections)
    )
    path.write_text(page, encoding="utf-8")
