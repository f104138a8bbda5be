"""`semsql search --html FILE`: a contact sheet, one page with a thumbnail per hit.

Thumbnails of local files are embedded (JPEG, base64), so that the page can be mailed or
moved; http(s) assets are linked. An asset with segments (the segments stage) has its largest
regions laid over its thumbnail, semi-transparent, with a legend of their labels and shares.
Look-alikes (`--by`) are framed in the colour of the index that found them, with a legend.
Every text on the page is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image, ImageOps

from semsql.search import SearchHit, SimilarHit
from semsql.segments import Segment

THUMBNAIL_PIXELS = 320
MAX_DRAWN_SEGMENTS = 6
SEGMENT_ALPHA = 110  # of 255: the picture stays readable under the colours
SEGMENT_COLOURS = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.2em; }}
.sheet {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 1em; }}
figure {{ margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: .5em; }}
img, .missing {{ width: 100%; height: 200px; object-fit: contain; background: #f4f4f4; }}
.missing {{ display: flex; align-items: center; justify-content: center; color: #888; }}
figcaption {{ margin-top: .4em; line-height: 1.35; word-break: break-word; }}
.seg i {{ display: inline-block; width: .8em; height: .8em; margin: 0 .2em 0 .4em; }}
.score {{ font-weight: 600; }} .by {{ color: #06c; }} .uri {{ color: #888; font-size: .85em; }}
.at {{ display: block; font-size: .85em; color: #a40; }}
.found-semantic {{ border: 3px solid #1f6fd1; }} .found-content {{ border: 3px solid #d9822b; }}
.found-both {{ border: 3px solid #2a9d4b; }}
.legend span {{ display: inline-block; padding: .1em .6em; margin-right: .5em; }}
</style></head>
<body><h1>{title}</h1><p>{summary}</p>{legend}
<div class="sheet">
{figures}
</div></body></html>
"""

FIGURE = """<figure{found}>{picture}<figcaption>
<span class="score">#{rank} &middot; {score}</span> <span class="by">{matched_by}</span><br>
{caption}{details}{legend}<br><span class="uri">{uri}</span></figcaption></figure>"""


def local_path(uri: str) -> Path | None:
    """The file of a local asset (a path or a file:// URI); None for URLs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    return Path(uri)


def thumbnail_data_uri(path: Path | bytes, segments: Sequence[Segment] = ()) -> str | None:
    """A JPEG thumbnail of the file (or of these image bytes: a video's frame) as a data URI."""
    try:
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            image = with_segments(image.convert("RGB"), segments)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def with_segments(image: Image.Image, segments: Sequence[Segment]) -> Image.Image:
    """The image with the largest segments' masks laid over it, one colour each."""
    for segment, colour in zip(segments[:MAX_DRAWN_SEGMENTS], SEGMENT_COLOURS, strict=False):
        inside = segment.mask.decode()
        mask = Image.fromarray(inside.astype("uint8") * SEGMENT_ALPHA, mode="L")
        mask = mask.resize(image.size, Image.Resampling.NEAREST)
        image.paste(colour, (0, 0, *image.size), mask)
    return image


def legend(segments: Sequence[Segment]) -> str:
    """The drawn segments' colours, labels and shares."""
    entries = [
        f'<i style="background: rgb{colour}"></i>{html.escape(segment.label)} {segment.share:.0%}'
        for segment, colour in zip(segments[:MAX_DRAWN_SEGMENTS], SEGMENT_COLOURS, strict=False)
    ]
    return f'<br><small class="seg">{"".join(entries)}</small>' if entries else ""


def picture(
    uri: str, segments: Sequence[Segment] = (), frame: tuple[bytes, timedelta] | None = None
) -> str:
    """The asset's thumbnail; for a video, that of its frame (its best moment) with the time."""
    if frame is not None:
        jpeg, at = frame
        source = thumbnail_data_uri(jpeg)
        moment = f'<span class="at">▶ {html.escape(str(at))}</span>'
        return f'<img src="{html.escape(source or "")}" alt="frame at {at}">{moment}'
    path = local_path(uri)
    source = uri if path is None else thumbnail_data_uri(path, segments)
    if source is None:
        return '<div class="missing">not readable</div>'
    return f'<img src="{html.escape(source)}" alt="">'


FOUND_BY = {
    "both": "found by both indexes",
    "semantic": "found by meaning (semantic index)",
    "content": "found by look (content index)",
}
LEGEND = '<p class="legend">{}</p>'.format(
    "".join(
        f'<span class="found-{name}">{html.escape(text)}</span>' for name, text in FOUND_BY.items()
    )
)


def found_by(hit: SearchHit | SimilarHit) -> tuple[str, str]:
    """The figure's class attribute and its 'found by' words: a look-alike's index (with its
    content distance), or a search hit's signals."""
    if isinstance(hit, SearchHit):
        return "", " ".join(hit.matched_by)
    words = hit.matched_by
    if hit.content_distance is not None:
        words += f" · {hit.content_distance} bits"
    index = hit.matched_by if hit.matched_by in FOUND_BY else "unknown"
    return f' class="found-{index}"', words


def figure(
    hit: SearchHit | SimilarHit,
    segments: Sequence[Segment] = (),
    frame: tuple[bytes, timedelta] | None = None,
) -> str:
    details = ", ".join(
        part
        for part in (
            ", ".join(hit.tags[:6]),
            ", ".join(hit.emotions),
            ", ".join(hit.people),
            f"{hit.taken_at:%Y-%m-%d}" if hit.taken_at else "",
        )
        if part
    )
    found, words = found_by(hit)
    return FIGURE.format(
        found=found,
        picture=picture(hit.uri, segments, frame),
        rank=hit.rank,
        score="" if hit.score is None else f"{hit.score:.3f}",
        matched_by=html.escape(words),
        caption=html.escape(hit.caption or ""),
        details=f"<br><small>{html.escape(details)}</small>" if details else "",
        legend=legend(segments),
        uri=html.escape(hit.uri),
    )


def write_contact_sheet(
    path: Path,
    hits: Sequence[SearchHit] | Sequence[SimilarHit],
    title: str,
    segments: Mapping[int, Sequence[Segment]] | None = None,
    frames: Mapping[int, tuple[bytes, timedelta]] | None = None,
) -> None:
    """segments: asset id -> its segments, largest first (semsql.segments.stored_segments);
    frames: video asset id -> the JPEG of its best moment and its time
    (semsql.frames.moment_jpegs)."""
    segments = segments or {}
    frames = frames or {}
    look_alikes = any(isinstance(hit, SimilarHit) for hit in hits)
    found = "the index that found each" if look_alikes else "the signals that found each"
    summary = f"{len(hits)} result(s); score and {found}."
    page = PAGE.format(
        title=html.escape(title),
        summary=html.escape(summary),
        legend=LEGEND if look_alikes else "",
        figures="\n".join(
            figure(hit, segments.get(hit.asset_id, ()), frames.get(hit.asset_id)) for hit in hits
        ),
    )
    path.write_text(page, encoding="utf-8")
