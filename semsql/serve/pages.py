"""The web pages: search, asset, people, duplicates, jobs, and the login of a token server.
Each shows what the API returns (the same service functions); forms that change data post
to the API from static/app.js with the page's CSRF token."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParameter
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from semsql.duplicates import DuplicateQuery, review
from semsql.search import SearchRequest
from semsql.serve import facts, services
from semsql.serve.context import Context, context
from semsql.serve.errors import ApiError
from semsql.serve.guard import LOGIN_COOKIE, login_cookie_value
from semsql.serve.queries import require_text_worker, search_parameters

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
Ctx = Annotated[Context, Depends(context)]
RowId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
SIGNALS = ("image", "text", "keyword", "name", "content", "semantic", "both")
DATE_PARAMETERS = frozenset({"taken_after", "taken_before"})
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def page(request: Request, name: str, status: int = 200, **values: Any) -> Response:
    return templates.TemplateResponse(
        request,
        name,
        {"csrf": request.state.csrf, "signals": SIGNALS, **values},
        status_code=status,
    )


def error_page(request: Request, error: ApiError) -> Response:
    return page(request, "error.html", error.status, error=error)


@router.get("/")
def search_page(
    request: Request, ctx: Ctx, query: Annotated[SearchRequest, Depends(search_parameters)]
) -> Response:
    """The search: the URL holds the whole query (every parameter of GET /api/search)."""
    warnings: list[str] = []
    found = services.Found([], [])
    facets: dict[str, Any] = {"counted": 0, "complete": True}
    with ctx.database.reader() as conn:
        try:
            require_text_worker(conn, query)
        except ApiError as error:
            warnings.append(f"{error.message}: showing matches by keywords and names alone")
        try:
            found = services.search(conn, query, partial=True)
            facets = services.result_facets(conn, query)
        except ApiError as error:
            warnings.append(error.message)
        except Exception as error:  # a refused argument: said on the page, not a traceback
            known = _known(error)
            if known is None:
                raise
            warnings.append(known.message)
    facets = services.with_chosen(facets, query)
    given = [(key, value) for key, value in request.query_params.multi_items() if value]
    paging = [(key, value) for key, value in given if key != "offset"]

    def date_link(after: str | None, before: str | None) -> str:
        """This search with another date range (none: any date), from its first page."""
        kept = [(key, value) for key, value in paging if key not in DATE_PARAMETERS]
        dates = [] if after is None else [("taken_after", after), ("taken_before", before)]
        return "/?" + urlencode([*kept, *dates])

    offset, k = query.offset or 0, query.k or 20
    return page(
        request,
        "search.html",
        query=query,
        hits=found.hits,
        notices=found.notices,
        warnings=warnings,
        facets=facets,
        date_link=date_link,
        months=MONTHS,
        previous=urlencode([*paging, ("offset", max(0, offset - k))]) if offset else None,
        next=urlencode([*paging, ("offset", offset + k)]) if len(found.hits) == k else None,
    )


def _known(error: Exception) -> ApiError | None:
    import psycopg

    from semsql.serve.errors import database_error

    return database_error(error) if isinstance(error, psycopg.Error) else None


@router.get("/assets/{asset_id}")
def asset_page(request: Request, ctx: Ctx, asset_id: RowId) -> Response:
    with ctx.database.reader() as conn:
        try:
            asset = services.asset_with_similar(conn, asset_id)
        except ApiError as error:
            return error_page(request, error)
    return page(request, "asset.html", asset=asset)


@router.get("/people")
def people_page(request: Request, ctx: Ctx) -> Response:
    with ctx.database.reader() as conn:
        rejected: dict[int, list[dict[str, Any]]] = {}
        for rejection in facts.rejections(conn):
            rejected.setdefault(rejection["person_id"], []).append(rejection)
        return page(
            request,
            "people.html",
            people=facts.people(conn),
            rejected=rejected,
            clusters=facts.clusters(conn),
            thresholds=facts.match_thresholds(conn),
        )


@router.get("/duplicates")
def duplicates_page(request: Request, ctx: Ctx, by: str = "content") -> Response:
    groups: list[Any] = []
    problem = None
    with ctx.database.reader() as conn:
        try:
            groups = review(conn, DuplicateQuery(by=by))
        except Exception as error:
            known = _known(error)
            if known is None:
                raise
            problem = known.message
    return page(request, "duplicates.html", groups=groups, by=by, problem=problem)


@router.get("/jobs")
def jobs_page(request: Request, ctx: Ctx) -> Response:
    with ctx.database.reader() as conn:
        return page(
            request,
            "jobs.html",
            jobs=facts.jobs(conn, 50),
            failed=facts.failed_tasks(conn),
            limits=ctx.settings,
        )


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    return page(request, "login.html", next=_local(next), problem=None)


@router.post("/login")
def login(
    request: Request, ctx: Ctx, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    expected = ctx.settings.token
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        return page(request, "login.html", 401, next=_local(next), problem="wrong token")
    response = RedirectResponse(_local(next), 303)
    response.set_cookie(
        LOGIN_COOKIE, login_cookie_value(expected), httponly=True, samesite="strict"
    )
    return response


@router.get("/healthz")
def health() -> dict[str, str]:
    return {"status": "ok"}


def _local(target: str) -> str:
    """Only a path of this server (no open redirect)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"
