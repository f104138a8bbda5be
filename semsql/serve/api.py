"""The HTTP API (JSON), documented at /docs. Reads run as the analyst role, uploads and edits
as the writer role (semsql/serve/db.py)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
import psycopg
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParameter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from semsql.duplicates import BY as DUPLICATES_BY
from semsql.duplicates import DuplicateQuery, delete_assets, review
from semsql.search import SIMILAR_BY, SIMILAR_PRIORITIES, SimilarRequest
from semsql.serve import async_search, facts, services
from semsql.serve.context import Context, context
from semsql.serve.errors import ApiError, database_error, error_response, unexpected_error
from semsql.serve.queries import (
    ApiSearchQuery,
    openapi_parameters,
    parse_query,
    require_text_worker,
)
from semsql.serve.thumbnails import face_crop, thumbnail_size
from semsql.serve.uploads import receive

router = APIRouter(prefix="/api")
Ctx = Annotated[Context, Depends(context)]
Priority = Literal["both_first", "semantic_first", "content_first"]
RowId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
CACHED = {"cache-control": "private, max-age=86400"}


def json_response(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, default=str, ensure_ascii=False)
    return Response(body, status, media_type="application/json")


def hits_response(found: dict[str, Any]) -> Response:
    """Found.as_dict() as json_response writes it (times by str, as async_search's rows hold
    them), by orjson: json.dumps takes twelve times as long for a page of hits, most of it
    writing floats, pydantic-core's encoder three times (both write the same floats)."""
    return Response(orjson.dumps(found), media_type="application/json")


UPLOAD_DOCS = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more images.",
                        },
                        "caption": {"type": "string"},
                        "tags": {"type": "string", "description": "Separated by commas."},
                        "people": {"type": "string", "description": "Names, separated by commas."},
                        "collection": {"type": "string", "default": "default"},
                    },
                }
            }
        },
    }
}
"""POST /api/assets's body, which the route reads itself (uploads.receive)."""


@router.post(
    "/assets",
    status_code=202,
    summary="Upload images: one ingest job",
    openapi_extra=UPLOAD_DOCS,
)
async def upload_assets(http: Request) -> Response:
    """Stores the files under the media folder as they arrive and ingests them as one job (as
    `semsql ingest` does); the answer is 202 with the job id to follow at /api/jobs/{id}."""
    ctx = await context(http)
    content_type = http.headers.get("content-type", "")
    received = await receive(content_type, http.stream(), ctx.uploads)
    job_id, status = await ctx.uploads.accept(received)
    return json_response({"job_id": job_id, "status": status, "url": f"/api/jobs/{job_id}"}, 202)


@router.get("/jobs", summary="Recent jobs")
def list_jobs(ctx: Ctx, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
    with ctx.database.reader() as conn:
        return json_response(facts.jobs(conn, limit))


@router.get("/jobs/{job_id}", summary="A job: status, counts, per-file errors")
def get_job(ctx: Ctx, job_id: RowId) -> Response:
    with ctx.database.reader() as conn:
        return json_response(facts.job(conn, job_id))


SEARCH_DOCS = {"parameters": openapi_parameters(ApiSearchQuery)}
"""GET /api/search's parameters (and its facets'), which the routes parse themselves."""


@router.get(
    "/search", summary="semsql.search, with every one of its parameters", openapi_extra=SEARCH_DOCS
)
async def search(http: Request) -> Response:
    """On the event loop, its parameters validated as one model (queries.SearchQuery).
    fast.SearchRoute answers it ahead of FastAPI's routing; this route documents it."""
    return await search_answer(await context(http), http.scope["query_string"])


async def search_answer(ctx: Context, query_string: bytes) -> Response:
    """GET /api/search's answer to a query string: the hits, or the error (as the app's
    handlers answer one) that the parameters or the database make."""
    try:
        given = parse_query(ApiSearchQuery, query_string)
        async with ctx.database.async_reader() as conn:
            found = await async_search.search(conn, given.request(), given.partial)
    except ApiError as error:
        return error_response(error)
    except psycopg.Error as error:
        known = database_error(error)
        if known is None:  # a bug, as the app's handler of psycopg errors answers one
            return unexpected_error("GET", "/api/search", error)
        return error_response(known)
    return hits_response(found)


@router.get(
    "/search/facets",
    summary="Filter values of a search's results, with counts",
    openapi_extra=SEARCH_DOCS,
)
def search_facets(ctx: Ctx, http: Request) -> Response:
    """Tags, people, emotions and collections of the results of the same search (every
    parameter of GET /api/search; k and offset aside), each with how many results have it,
    counted over the first 500 results (`counted`; `complete` when that is all of them), or
    over the whole library when the search narrows nothing (`counted` null)."""
    given = parse_query(ApiSearchQuery, http.query_params)
    request = given.request()
    with ctx.database.reader() as conn:
        if not given.partial:
            require_text_worker(conn, request)
        return json_response(services.result_facets(conn, request))


@router.post("/search/image", summary="Images like an uploaded one, by meaning and/or content")
def search_image(
    ctx: Ctx,
    file: Annotated[UploadFile, File()],
    by: Annotated[Literal["semantic", "content", "both"], Form()] = "both",
    k: Annotated[int, Form(ge=1, le=1000)] = 20,
    priority: Annotated[Priority | None, Form()] = None,
    split: Annotated[float | None, Form(ge=0, le=1, allow_inf_nan=False)] = None,
) -> Response:
    assert by in SIMILAR_BY and (priority is None or priority in SIMILAR_PRIORITIES)
    data = file.file.read(ctx.settings.max_file_bytes + 1)
    if len(data) > ctx.settings.max_file_bytes:
        raise ApiError(413, f"the image is over the {ctx.settings.max_file_bytes:,}-byte limit")
    request = SimilarRequest(k=k, by=by, priority=priority, split=split)
    with ctx.database.reader() as conn:
        found = services.similar_to_upload(conn, data, request, ctx.settings.max_pixels)
    return json_response(found.as_dict())


@router.get("/assets/{asset_id}", summary="An asset's facts and its look-alikes")
def get_asset(ctx: Ctx, asset_id: RowId) -> Response:
    with ctx.database.reader() as conn:
        return json_response(services.asset_with_similar(conn, asset_id))


@router.get("/assets/{asset_id}/thumbnail", summary="A cached thumbnail, upright")
def thumbnail(
    ctx: Ctx,
    request: Request,
    asset_id: RowId,
    size: int | None = None,
    at: Annotated[
        float | None,
        Query(ge=0, le=1e9, allow_inf_nan=False, description="A video's moment, in seconds."),
    ] = None,
) -> Response:
    """A video's is the frame nearest `at` (a search hit's best_at), else its first."""
    side = thumbnail_size(size)
    moment = None if at is None else timedelta(seconds=at)
    with ctx.database.reader() as conn:  # a video's frame is read only to make a thumbnail
        image = facts.stored_image(conn, asset_id, moment)
        tag = f'"{image.key}-{side}"'  # the content's: an edited file is a new thumbnail
        headers = {**CACHED, "etag": tag}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        data = ctx.thumbnails.get(image, side).read_bytes()  # a few kB: one read, no streaming
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get("/faces/{face_id}/crop", summary="A crop around a face")
def face_image(ctx: Ctx, face_id: RowId) -> Response:
    with ctx.database.reader() as conn:
        image, box = facts.face(conn, face_id)
        data = face_crop(ctx.thumbnails, image, face_id, box).read_bytes()
    return Response(data, media_type="image/jpeg", headers=CACHED)


@router.get("/people", summary="Enrolled people and clusters of unknown faces")
def list_people(ctx: Ctx) -> Response:
    with ctx.database.reader() as conn:
        return json_response(
            {
                "people": facts.people(conn),
                "clusters": facts.clusters(conn),
                **facts.match_thresholds(conn),
            }
        )


class ClusterName(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["person", "celebrity"] | None = None


@router.post("/clusters/{cluster_id}/name", summary="Name a cluster of unknown faces")
def name_cluster(ctx: Ctx, cluster_id: RowId, body: ClusterName) -> Response:
    with ctx.database.writer() as conn:
        matched = conn.execute(
            "SELECT faces_matched FROM semsql.name_face_cluster(%s, %s, %s)",
            [cluster_id, body.name, body.kind],
        ).fetchone()
        conn.commit()
    return json_response(
        {"cluster_id": cluster_id, "name": body.name, "faces_matched": matched[0] if matched else 0}
    )


class SplitCluster(BaseModel):
    min_similarity: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)


@router.post("/clusters/{cluster_id}/split", summary="Split a cluster that holds two people")
def split_cluster(ctx: Ctx, cluster_id: RowId, body: SplitCluster) -> Response:
    with ctx.database.writer() as conn:
        made = conn.execute(
            "SELECT semsql.split_face_cluster(%s, %s)", [cluster_id, body.min_similarity]
        ).fetchall()
        conn.commit()
    return json_response({"cluster_id": cluster_id, "clusters": [row[0] for row in made]})


class ClusterMerge(BaseModel):
    into: int = Field(ge=1, le=2**63 - 1, description="The cluster that takes the faces.")


@router.post("/clusters/{cluster_id}/merge", summary="Merge a cluster into another (one person)")
def merge_clusters(ctx: Ctx, cluster_id: RowId, body: ClusterMerge) -> Response:
    with ctx.database.writer() as conn:
        moved = conn.execute(
            "SELECT semsql.merge_face_clusters(%s, %s)", [cluster_id, body.into]
        ).fetchone()
        conn.commit()
    return json_response(
        {"cluster_id": body.into, "merged": cluster_id, "faces_moved": moved[0] if moved else 0}
    )


class PeopleMerge(BaseModel):
    person: str = Field(min_length=1, max_length=200, description="Merged away (deleted).")
    into: str = Field(min_length=1, max_length=200, description="Keeps the faces.")


@router.post("/people/merge", summary="Merge two people: one is the other")
def merge_people(ctx: Ctx, body: PeopleMerge) -> Response:
    """semsql.merge_people: `person`'s references, faces and stated assets move to `into`."""
    with ctx.database.writer() as conn:
        moved = conn.execute(
            "SELECT semsql.merge_people(%s, %s)", [body.person, body.into]
        ).fetchone()
        conn.commit()
    return json_response(
        {"person": body.person, "into": body.into, "faces_moved": moved[0] if moved else 0}
    )


@router.post("/faces/{face_id}/not-person", summary='"Not this person": unlink a face')
def reject_face(ctx: Ctx, face_id: RowId) -> Response:
    """semsql.reject_face_person: the face leaves the person it is linked to and is never
    matched to them again; it is matched against everyone else (`person`: whom it matches
    now, or null)."""
    with ctx.database.writer() as conn:
        found = facts.rows(
            conn,
            "SELECT face_id, rejected, person, match_confidence FROM semsql.reject_face_person(%s)",
            [face_id],
        )
        conn.commit()
    return json_response(found[0])


@router.get("/people/rejections", summary='The faces said "not this person"')
def list_rejections(ctx: Ctx) -> Response:
    with ctx.database.reader() as conn:
        return json_response(facts.rejections(conn))


@router.delete(
    "/faces/{face_id}/not-person/{person_id}", summary='Undo "not this person": match it again'
)
def undo_rejection(ctx: Ctx, face_id: RowId, person_id: RowId) -> Response:
    """semsql.undo_face_rejection: the face may be matched to the person again, and is matched
    at once as recognition would (`person`: whom it matches now, or null); 404 when the face
    was not said not to be them."""
    with ctx.database.writer() as conn:
        found = facts.rows(
            conn,
            "SELECT face_id, restored, person, match_confidence"
            " FROM semsql.undo_face_rejection(%s, %s)",
            [face_id, person_id],
        )
        conn.commit()
    return json_response(found[0])


@router.get("/people/threshold", summary="The match threshold of face recognition")
def get_threshold(ctx: Ctx) -> Response:
    with ctx.database.reader() as conn:
        return json_response(facts.match_thresholds(conn))


class Threshold(BaseModel):
    threshold: float = Field(ge=0, le=1, allow_inf_nan=False)
    model: str | None = Field(
        default=None, min_length=1, max_length=200, description="A face-vector model; none: all"
    )


@router.post("/people/threshold", summary="Set the match threshold: every face is matched again")
def set_threshold(ctx: Ctx, body: Threshold) -> Response:
    """semsql.set_face_match_threshold: the least match confidence at which a face is
    recognised (of one face-vector model, or of the models without their own)."""
    with ctx.database.writer() as conn:
        changed = conn.execute(
            "SELECT semsql.set_face_match_threshold(%s, %s::text)", [body.threshold, body.model]
        ).fetchone()
        conn.commit()
        thresholds = facts.match_thresholds(conn)
    return json_response({**thresholds, "faces_changed": changed[0] if changed else 0})


class Stages(BaseModel):
    stages: list[str] | None = Field(default=None, max_length=50)


@router.post("/tasks/retry", summary="Queue the failed tasks again (of these stages, or all)")
def retry_tasks(ctx: Ctx, body: Stages) -> Response:
    with ctx.database.writer() as conn:
        queued = conn.execute("SELECT semsql.retry_failed_tasks(%s)", [body.stages]).fetchone()
        conn.commit()
    return json_response({"queued": queued[0] if queued else 0})


@router.get("/tasks/failed", summary="Failed tasks grouped by stage and reason")
def failed_tasks(ctx: Ctx) -> Response:
    with ctx.database.reader() as conn:
        return json_response(facts.failed_tasks(conn))


class Reason(BaseModel):
    stage: str = Field(min_length=1, max_length=200)
    error: str | None = Field(
        default=None,
        max_length=100_000,
        description="A reason or an error of GET /api/tasks/failed: the tasks of its reason.",
    )
    failed_until: datetime | None = Field(
        default=None, description="Only tasks that failed by then (the group's last_failed_at)."
    )


@router.post("/tasks/retry-reason", summary="Queue again the tasks that failed for one reason")
def retry_reason(ctx: Ctx, body: Reason) -> Response:
    """The failed tasks of `stage` whose error has the reason of `error` (one row of GET
    /api/tasks/failed, up to its last_failed_at) go back to the queue
    (semsql.requeue_tasks); 404 when none is left."""
    with ctx.database.writer() as conn:
        queued = services.retry_failed_reason(conn, body.stage, body.error, body.failed_until)
        conn.commit()
    return json_response({"stage": body.stage, "error": body.error, "queued": queued})


@router.get("/duplicates", summary="Groups of duplicates, the copy to keep first")
def duplicates(
    ctx: Ctx,
    by: Literal["content", "semantic"] = "content",
    max_distance: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    collection: str | None = None,
) -> Response:
    assert by in DUPLICATES_BY
    with ctx.database.reader() as conn:
        groups = review(
            conn, DuplicateQuery(by=by, max_distance=max_distance, collection=collection)
        )
    return json_response(
        [{"group_id": g.group_id, "copies": [asdict(c) for c in g.copies]} for g in groups]
    )


class AssetIds(BaseModel):
    asset_ids: list[int] = Field(min_length=1, max_length=10_000)


@router.post("/duplicates/delete", summary="Delete asset rows (never files on disk)")
def delete_duplicates(ctx: Ctx, body: AssetIds) -> Response:
    with ctx.database.writer() as conn:
        deleted = delete_assets(conn, body.asset_ids)
        conn.commit()
    return json_response({"deleted": [asdict(d) for d in deleted]})
