"""What the pages and the API show about stored things: an asset's facts, jobs, people,
face clusters. Read-only queries of semsql's tables and views, as the analyst role."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from semsql.serve import date_facets
from semsql.serve.errors import ApiError
from semsql.serve.thumbnails import StoredImage, VideoFrame

JOB_COLUMNS = """id, status, collection, new_count, updated_count, skipped_count, failed_count,
                 skipped_reasons, error, created_at, started_at, ingested_at, finished_at"""


def rows(conn: psycopg.Connection, query: Any, params: Any = None) -> list[dict[str, Any]]:
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def stored_image(
    conn: psycopg.Connection, asset_id: int, at: timedelta | None = None
) -> StoredImage:
    """The asset's picture: its file, or for a video the frame nearest `at` (the first), whose
    JPEG is read only when a thumbnail is made from it (with this connection)."""
    found = conn.execute(
        """SELECT a.uri, a.root, a.sha256, a.bytes, a.media_type, fr.id, fr.at_ms
           FROM semsql.assets a
           LEFT JOIN semsql.frames fr
             ON a.media_type = 'video' AND fr.id = semsql.moment_frame(a.id, %s::integer)
           WHERE a.id = %s""",
        [None if at is None else round(at.total_seconds() * 1000), asset_id],
    ).fetchone()
    if found is None:
        raise ApiError(404, f"no asset has id {asset_id}")
    uri, root, sha256, size, media_type, frame_id, at_ms = found
    if media_type != "video":
        return StoredImage(uri, root, sha256, size)
    if frame_id is None:
        raise ApiError(404, f"asset {asset_id} is a video with no frames sampled yet")
    return StoredImage(uri, root, sha256, size, _video_frame(conn, frame_id, at_ms))


def _video_frame(conn: psycopg.Connection, frame_id: int, at_ms: int) -> VideoFrame:
    return VideoFrame(at_ms, functools.partial(frame_jpeg, conn, frame_id))


def frame_jpeg(conn: psycopg.Connection, frame_id: int) -> bytes:
    """A video frame's JPEG (semsql.frames.jpeg); 404 when the frame is gone meanwhile."""
    found = conn.execute("SELECT jpeg FROM semsql.frames WHERE id = %s", [frame_id]).fetchone()
    if found is None:
        raise ApiError(404, f"video frame {frame_id} is gone (the video changed?)")
    return bytes(found[0])


def asset(conn: psycopg.Connection, asset_id: int) -> dict[str, Any]:
    """An asset with its captions, tags, faces (boxes, emotions, people), people, jobs, and a
    video's frames (time, scene cut, caption, faces)."""
    found = rows(
        conn,
        """SELECT id, uri, collection, media_type, mime, width, height, bytes, taken_at,
                  status, error, metadata, job_id, created_at, updated_at
           FROM semsql.assets WHERE id = %s""",
        [asset_id],
    )
    if not found:
        raise ApiError(404, f"no asset has id {asset_id}")
    facts = found[0]
    facts["captions"] = rows(
        conn,
        """SELECT source, text FROM semsql.captions WHERE asset_id = %s
           ORDER BY source <> 'user', source""",
        [asset_id],
    )
    facts["caption"] = facts["captions"][0]["text"] if facts["captions"] else None
    facts["tags"] = rows(
        conn,
        """SELECT label, source, confidence, box FROM semsql.tags WHERE asset_id = %s
           ORDER BY source <> 'user', confidence DESC NULLS FIRST, label""",
        [asset_id],
    )
    facts["faces"] = rows(
        conn,
        """SELECT f.id, f.box, f.confidence, f.emotion, f.emotion_scores, p.name AS person,
                  f.match_confidence, (fr.at_ms / 1000.0)::float8 AS at_seconds
           FROM semsql.faces f LEFT JOIN semsql.people p ON p.id = f.person_id
           LEFT JOIN semsql.frames fr ON fr.id = f.frame_id  -- a video's: the frame it is in
           WHERE f.asset_id = %s ORDER BY fr.at_ms NULLS FIRST, f.box[1], f.id""",
        [asset_id],
    )
    facts["frames"] = rows(
        conn,
        """SELECT (fr.at_ms / 1000.0)::float8 AS at_seconds, fr.scene_cut, fr.caption,
                  (SELECT count(*) FROM semsql.faces x WHERE x.frame_id = fr.id) AS faces
           FROM semsql.frames fr WHERE fr.asset_id = %s ORDER BY fr.at_ms""",
        [asset_id],
    )
    facts["people"] = rows(
        conn,
        """SELECT DISTINCT ON (name) name, kind, source, confidence FROM semsql.asset_people_all
           WHERE asset_id = %s ORDER BY name, confidence DESC""",
        [asset_id],
    )
    facts["emotions"] = sorted({face["emotion"] for face in facts["faces"] if face["emotion"]})
    facts["jobs"] = rows(
        conn,
        """SELECT DISTINCT j.id, j.status, j.created_at FROM semsql.job_items i
           JOIN semsql.jobs j ON j.id = i.job_id WHERE i.asset_id = %s ORDER BY j.id""",
        [asset_id],
    )
    return facts


def jobs(conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    return rows(conn, f"SELECT {JOB_COLUMNS} FROM semsql.jobs ORDER BY id DESC LIMIT %s", [limit])


def job(conn: psycopg.Connection, job_id: int) -> dict[str, Any]:
    """A job with its counts, per-file errors and its assets' enrichment."""
    found = rows(conn, f"SELECT {JOB_COLUMNS} FROM semsql.jobs WHERE id = %s", [job_id])
    if not found:
        raise ApiError(404, f"no job {job_id}")
    result = found[0]
    result["errors"] = rows(
        conn,
        """SELECT uri, error_code AS code, error FROM semsql.job_items
           WHERE job_id = %s AND outcome = 'failed' ORDER BY position""",
        [job_id],
    )
    result["assets"] = rows(
        conn,
        """SELECT i.asset_id, i.uri, i.outcome, a.status FROM semsql.job_items i
           LEFT JOIN semsql.assets a ON a.id = i.asset_id
           WHERE i.job_id = %s AND i.asset_id IS NOT NULL ORDER BY i.position""",
        [job_id],
    )
    return result


def failed_tasks(conn: psycopg.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Failed tasks grouped by stage and reason (semsql.failure_reason: their error without
    its file names, numbers ...): how many, how many error texts (`error`: the latest), the
    last failure's time (what a retry of the group goes up to) and a few of their assets."""
    return rows(
        conn,
        """SELECT stage, semsql.failure_reason(error) AS reason, count(*) AS tasks,
                  (array_agg(error ORDER BY finished_at DESC NULLS LAST))[1] AS error,
                  count(DISTINCT error) AS errors, max(finished_at) AS last_failed_at,
                  (array_agg(asset_id ORDER BY finished_at DESC NULLS LAST))[1:10] AS asset_ids
           FROM semsql.failed_tasks GROUP BY stage, reason
           ORDER BY count(*) DESC, stage, reason LIMIT %s""",
        [limit],
    )


def people(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return rows(
        conn,
        """SELECT s.id, s.name, s.kind, s.reference_faces, s.faces, s.assets,
                  (SELECT array_agg(f.id ORDER BY f.match_confidence DESC NULLS LAST)
                   FROM (SELECT id, match_confidence FROM semsql.faces WHERE person_id = s.id
                         ORDER BY match_confidence DESC NULLS LAST LIMIT 6) f) AS face_ids
           FROM semsql.people_summary s ORDER BY lower(s.name)""",
    )


def rejections(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The faces said not to be someone ("not this person"), per person, the latest first:
    whom each face matches now, and where it is."""
    return rows(
        conn,
        """SELECT r.face_id, r.person_id, p.name AS rejected, r.created_at, f.asset_id,
                  now_p.name AS person, f.match_confidence
           FROM semsql.face_rejections r
           JOIN semsql.people p ON p.id = r.person_id
           JOIN semsql.faces f ON f.id = r.face_id
           LEFT JOIN semsql.people now_p ON now_p.id = f.person_id
           ORDER BY lower(p.name), r.created_at DESC, r.face_id""",
    )


def clusters(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return rows(conn, "SELECT * FROM semsql.face_cluster_summary ORDER BY faces DESC, cluster_id")


def match_thresholds(conn: psycopg.Connection) -> dict[str, Any]:
    """The match threshold of recognition, and those of the models that have their own."""
    found = conn.execute(
        "SELECT round(semsql.face_match_threshold()::numeric, 4)::float8"
    ).fetchone()
    models = rows(
        conn,
        "SELECT model, round(match_threshold::numeric, 4)::float8 AS match_threshold"
        " FROM semsql.face_model_settings ORDER BY model",
    )
    return {"match_threshold": found[0] if found else None, "model_thresholds": models}


def face(conn: psycopg.Connection, face_id: int) -> tuple[StoredImage, list[float]]:
    """The image a face is in (for a face in a video's frame: that frame, read only when the
    crop is made, with this connection), and the face's box."""
    found = conn.execute(
        """SELECT a.uri, a.root, a.sha256, a.bytes, f.box, f.frame_id, fr.at_ms
           FROM semsql.faces f JOIN semsql.assets a ON a.id = f.asset_id
           LEFT JOIN semsql.frames fr ON fr.id = f.frame_id
           WHERE f.id = %s""",
        [face_id],
    ).fetchone()
    if found is None:
        raise ApiError(404, f"no face has id {face_id}")
    uri, root, sha256, size, box, frame_id, at_ms = found
    frame = None if frame_id is None else _video_frame(conn, frame_id, at_ms)
    return StoredImage(uri, root, sha256, size, frame), list(box)


ASSET_COUNTS = """
SELECT CASE WHEN GROUPING(collection) = 0 THEN 'collection'
            WHEN GROUPING(media_type) = 0 THEN 'media_type' ELSE 'date' END,
       coalesce(collection, media_type, to_char(taken_at, 'YYYY')), count(*)::integer
FROM semsql.assets
GROUP BY GROUPING SETS ((collection), (media_type), (to_char(taken_at, 'YYYY')))
ORDER BY 1, 3 DESC, 2"""
"""Assets by collection, by media type and by year taken (in the session's time zone, as
semsql.search compares a date filter), in one scan."""


def facets(conn: psycopg.Connection) -> dict[str, Any]:
    """Filter values with how many assets each has: tags, people, emotions, collections, media
    types and years taken (the search page's facets)."""
    found: dict[str, list[dict[str, Any]]] = {"collection": [], "media_type": []}
    years: Counter[str] = Counter()
    for facet, value, assets in conn.execute(ASSET_COUNTS):
        if facet != "date":
            found[facet].append({"value": value, "assets": assets})
        elif value is not None:  # not the undated assets
            years[value] = assets
    return {
        "tag": rows(
            conn,
            "SELECT example_label AS value, assets FROM semsql.tag_summary"
            " ORDER BY assets DESC, tag LIMIT 30",
        ),
        "person": rows(
            conn,
            "SELECT name AS value, assets FROM semsql.people_summary WHERE assets > 0"
            " ORDER BY assets DESC, lower(name) LIMIT 30",
        ),
        "emotion": rows(
            conn,
            "SELECT emotion AS value, assets FROM semsql.emotion_summary"
            " WHERE emotion IS NOT NULL ORDER BY assets DESC LIMIT 12",
        ),
        "collection": found["collection"][:30],
        "media_type": found["media_type"],
        "date": date_facets.facet(years, None),
    }


def collections_of(conn: psycopg.Connection, asset_ids: list[int]) -> list[str]:
    """The collection of each of these assets (one entry per asset)."""
    found = conn.execute(
        "SELECT collection FROM semsql.assets WHERE id = ANY (%s::bigint[])", [asset_ids]
    )
    return [row[0] for row in found]
