"""Stage results into their tables: one statement per table and batch.

Each writer replaces what its stage wrote before for the same assets, so that a task that ran
twice (its worker died after the model but before the commit) leaves one set of rows. They
run inside the transaction that marks the tasks done (background_writer.py). semsql.stages
names each stage's writer. Boxes are stored in pixels of the upright original image (EXIF
orientation applied).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from .queue import Task

Done = Sequence[tuple[Task, Any]]

HALF_MAX = 65504.0  # the largest finite halfvec value
SEGMENTATION_SOURCE = "segmentation"
"""The source of the segments stage's tags (its model is in semsql.segments.model)."""

UPSERT_EMBEDDINGS = """
    INSERT INTO semsql.embeddings AS e (asset_id, space, model, embedding, input_sha256)
    SELECT r.asset_id, %(space)s, %(model)s, r.embedding, r.input_sha256
    FROM unnest(%(asset_ids)s::bigint[], %(embeddings)b::vector[], %(inputs)s::text[])
         AS r(asset_id, embedding, input_sha256)
    ORDER BY r.asset_id  -- the order refresh_search_documents locks documents in
    ON CONFLICT (asset_id, space) DO UPDATE
        SET model = EXCLUDED.model, embedding = EXCLUDED.embedding,
            input_sha256 = EXCLUDED.input_sha256, created_at = now()"""


def _asset_ids(done: Done) -> list[int]:
    return [task.asset_id for task, _ in done]


def _unit(value: float) -> float:
    """A confidence inside [0, 1] (float32 rounding can step just outside)."""
    return 0.0 if math.isnan(value) else min(max(float(value), 0.0), 1.0)


def _scaled(box: Sequence[float], scale: float) -> list[float]:
    return [round(float(v) * scale, 2) for v in box]


def write_captions(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, (caption, scale))"""
    conn.execute(
        "DELETE FROM semsql.captions WHERE asset_id = ANY (%s) AND source <> 'user'",
        [_asset_ids(done)],
    )
    rows = [(task.asset_id, text.strip()) for task, (text, _) in done if text and text.strip()]
    conn.execute(
        """INSERT INTO semsql.captions (asset_id, source, text)
           SELECT r.asset_id, %s, r.text
           FROM unnest(%s::bigint[], %s::text[]) AS r(asset_id, text)""",
        [model, [r[0] for r in rows], [r[1] for r in rows]],
    )


def write_tags(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, ([Tag], scale)); the segments stage's tags stay (write_segments)."""
    _replace_tags(
        conn,
        model,
        _asset_ids(done),
        [
            (task.asset_id, tag, _scaled(tag.box, scale), None)
            for task, (tags, scale) in done
            for tag in tags
        ],
    )


def _replace_tags(
    conn: psycopg.Connection,
    model: str,
    asset_ids: list[int],
    rows: Sequence[tuple[int, Any, list[float], int | None]],
) -> None:
    """rows: (asset id, Tag, box, frame id or None) replace the model's tags of those assets."""
    conn.execute(
        f"""DELETE FROM semsql.tags
            WHERE asset_id = ANY (%s) AND source NOT IN ('user', '{SEGMENTATION_SOURCE}')""",
        [asset_ids],
    )
    with conn.cursor().copy(
        "COPY semsql.tags (asset_id, label, confidence, box, source, frame_id) FROM STDIN"
    ) as copy:
        for asset_id, tag, box, frame_id in rows:
            if tag.label.strip():
                label, confidence = tag.label.strip(), _unit(tag.confidence)
                copy.write_row((asset_id, label, confidence, box, model, frame_id))


def write_segments(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, ([Segment], scale)); replaces the assets' segments and their tags (source
    'segmentation', confidence: the segment's mean probability, box: around its region)."""
    asset_ids = _asset_ids(done)
    conn.execute("DELETE FROM semsql.segments WHERE asset_id = ANY (%s)", [asset_ids])
    conn.execute(
        "DELETE FROM semsql.tags WHERE asset_id = ANY (%s) AND source = %s",
        [asset_ids, SEGMENTATION_SOURCE],
    )
    with conn.cursor().copy(
        """COPY semsql.segments (asset_id, label, share, score, mask_width, mask_height,
                                 mask_rle, model) FROM STDIN"""
    ) as copy:
        for task, (segments, _) in done:
            for s in segments:
                mask = s.mask
                row = (task.asset_id, s.label, s.share, _unit(s.score), mask.width, mask.height)
                copy.write_row((*row, list(mask.runs), model))
    with conn.cursor().copy(
        "COPY semsql.tags (asset_id, label, confidence, box, source) FROM STDIN"
    ) as copy:
        for task, (segments, scale) in done:
            for s in segments:
                box = None if s.box is None else _scaled(s.box, scale)
                copy.write_row((task.asset_id, s.label, _unit(s.score), box, SEGMENTATION_SOURCE))


def write_faces(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, ([DetectedFace], scale)); replaces every face of those assets."""
    rows = [(task.asset_id, None, face, scale) for task, (faces, scale) in done for face in faces]
    _replace_faces(conn, model, _asset_ids(done), rows)


def _replace_faces(
    conn: psycopg.Connection,
    model: str,
    asset_ids: list[int],
    rows: Sequence[tuple[int, int | None, Any, float]],
) -> None:
    """rows: (asset id, frame id or None, DetectedFace, scale) replace every face of those
    assets."""
    conn.execute("DELETE FROM semsql.faces WHERE asset_id = ANY (%s)", [asset_ids])
    with conn.cursor().copy(
        "COPY semsql.faces (asset_id, frame_id, box, confidence, detector) FROM STDIN"
    ) as copy:
        for asset_id, frame_id, face, scale in rows:
            box, confidence = _scaled(face.box, scale), _unit(face.confidence)
            copy.write_row((asset_id, frame_id, box, confidence, model))


def write_face_vectors(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, [(face id, vector)])"""
    pairs = [pair for _, found in done for pair in found]
    conn.execute(
        """UPDATE semsql.faces f SET embedding = r.embedding, embedding_model = %s
           FROM unnest(%s::bigint[], %b::vector[]) AS r(id, embedding) WHERE f.id = r.id""",
        [model, [face_id for face_id, _ in pairs], [_vector(v) for _, v in pairs]],
    )


def write_emotions(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, [(face id, Emotion)])"""
    pairs = [pair for _, found in done for pair in found]
    conn.execute(
        """UPDATE semsql.faces f
           SET emotion = r.emotion, emotion_scores = r.scores, emotion_model = %s
           FROM unnest(%s::bigint[], %s::text[], %s::jsonb[]) AS r(id, emotion, scores)
           WHERE f.id = r.id""",
        [
            model,
            [face_id for face_id, _ in pairs],
            [emotion.label for _, emotion in pairs],
            [Jsonb({k: round(_unit(v), 6) for k, v in e.scores.items()}) for _, e in pairs],
        ],
    )


def write_image_vectors(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, (vector, scale)); the input hash is the image's SHA-256."""
    upsert_embeddings(
        conn, "image", model, [(task.asset_id, vector, task.sha256) for task, (vector, _) in done]
    )


def write_content_hashes(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, ([content_hash.IndexRow], scale)); replaces the hashes of those assets."""
    conn.execute("DELETE FROM semsql.content_hashes WHERE asset_id = ANY (%s)", [_asset_ids(done)])
    rows = [(task.asset_id, *row) for task, (hashed, _) in done for row in hashed]
    conn.execute(
        """INSERT INTO semsql.content_hashes (asset_id, view, turn, hash, alternate, model)
           SELECT r.asset_id, r.view, r.turn, r.hash::bit(256), r.alternate, %s
           FROM unnest(%s::bigint[], %s::text[], %s::smallint[], %s::text[], %s::boolean[])
               AS r(asset_id, view, turn, hash, alternate)
           ORDER BY r.asset_id, r.view, r.turn""",
        [model, *([row[i] for row in rows] for i in range(5))],
    )


def write_frames(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, [video.SampledFrame]); replaces the videos' frames, and with them every
    fact found on the old ones (faces, tags, frame vectors: ON DELETE CASCADE)."""
    conn.execute("DELETE FROM semsql.frames WHERE asset_id = ANY (%s)", [_asset_ids(done)])
    with conn.cursor().copy(
        "COPY semsql.frames (asset_id, at_ms, scene_cut, width, height, jpeg, model) FROM STDIN"
    ) as copy:
        for task, frames in done:
            for frame in frames:
                width, height = frame.size
                row = (task.asset_id, frame.at_ms, frame.scene_cut, width, height, frame.jpeg)
                copy.write_row((*row, model))


def _frame_pairs(done: Done) -> list[tuple[Task, int, Any, float]]:
    """(task, frame id, output, scale) for each frame of the videos' FrameResults."""
    return [
        (task, frame_id, out, scale) for task, found in done for frame_id, (out, scale) in found
    ]


def write_frame_vectors(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, FrameResults of vectors): the videos' frame vectors in the image space."""
    conn.execute("DELETE FROM semsql.frame_vectors WHERE asset_id = ANY (%s)", [_asset_ids(done)])
    rows = _frame_pairs(done)
    conn.execute(
        """INSERT INTO semsql.frame_vectors (frame_id, asset_id, model, embedding)
           SELECT r.frame_id, r.asset_id, %s, r.embedding
           FROM unnest(%s::bigint[], %s::bigint[], %b::vector[]) AS r(frame_id, asset_id, embedding)
           ORDER BY r.asset_id""",
        [
            model,
            [frame_id for _, frame_id, _, _ in rows],
            [task.asset_id for task, _, _, _ in rows],
            [_vector(vector) for _, _, vector, _ in rows],
        ],
    )


def write_frame_faces(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, FrameResults of [DetectedFace]); boxes in the frame's pixels."""
    rows = [
        (task.asset_id, frame_id, face, scale)
        for task, frame_id, faces, scale in _frame_pairs(done)
        for face in faces
    ]
    _replace_faces(conn, model, _asset_ids(done), rows)


def write_frame_captions(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, FrameResults of captions): each frame's caption, and the video's caption,
    its frames' different captions in time order."""
    rows = _frame_pairs(done)
    conn.execute(
        """UPDATE semsql.frames f SET caption = nullif(btrim(r.caption), '')
           FROM unnest(%s::bigint[], %s::text[]) AS r(id, caption) WHERE f.id = r.id""",
        [[frame_id for _, frame_id, _, _ in rows], [text or "" for _, _, text, _ in rows]],
    )
    joined = []
    for task, found in done:
        texts = [text.strip() for _, (text, _) in found if text and text.strip()]
        joined.append((task, ("; ".join(dict.fromkeys(texts)), 1.0)))
    write_captions(conn, model, joined)


def write_frame_tags(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, FrameResults of [Tag]): each object with the frame it was seen in (its box
    in the frame's pixels)."""
    rows = [
        (task.asset_id, tag, _scaled(tag.box, scale), frame_id)
        for task, frame_id, tags, scale in _frame_pairs(done)
        for tag in tags
    ]
    _replace_tags(conn, model, _asset_ids(done), rows)


def write_text_vectors(conn: psycopg.Connection, model: str, done: Done) -> None:
    """done: (task, TextResult); an empty document removes the vector, an unchanged one keeps it."""
    empty = [task.asset_id for task, result in done if not result.document]
    conn.execute(
        "DELETE FROM semsql.embeddings WHERE space = 'text' AND asset_id = ANY (%s)", [empty]
    )
    upsert_embeddings(
        conn,
        "text",
        model,
        [
            (task.asset_id, result.vector, result.input_sha256)
            for task, result in done
            if result.vector is not None
        ],
    )


def upsert_embeddings(
    conn: psycopg.Connection, space: str, model: str, rows: Sequence[tuple[int, Any, str]]
) -> None:
    """rows: (asset id, vector, input_sha256), written in one statement."""
    if not rows:
        return
    conn.execute(
        UPSERT_EMBEDDINGS,
        {
            "space": space,
            "model": model,
            "asset_ids": [row[0] for row in rows],
            "embeddings": [_vector(row[1]) for row in rows],
            "inputs": [row[2] for row in rows],
        },
    )


def _vector(value: Any) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float32)
    if not np.isfinite(vector).all():
        raise ValueError("the model gave a vector with NaN or infinite values")
    if vector.size and np.abs(vector).max() > HALF_MAX:
        raise ValueError(
            f"the model gave a vector with values beyond ±{HALF_MAX:g}, which "
            "half precision (how semsql stores vectors) cannot hold"
        )
    return vector
