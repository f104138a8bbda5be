"""Errors as JSON with the status that fits, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

log = logging.getLogger("semsql.serve")

# SQLSTATE (or class) -> HTTP status, for what semsql's functions raise about the call.
SQLSTATE_STATUS = {
    "P0002": 404,  # no_data_found: no asset, person or cluster with that id or name
    "55000": 409,  # object_not_in_prerequisite_state: e.g. no content index yet
    "42501": 403,  # insufficient_privilege
    "22": 400,  # data exceptions: invalid_parameter_value, out of range, bad text
    "23": 409,  # integrity: a name already taken
    "54": 400,  # program_limit_exceeded: an over-long query text
    "P0001": 400,  # RAISE EXCEPTION without a code: a refused argument
    "08": 503,  # the database connection
    "53": 503,  # resources
    "57": 503,  # cancelled or shutting down
}


class ApiError(Exception):
    """An answer other than success, with its HTTP status and a message for people."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


def error_body(status: int, message: str, hint: str | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "message": message, **({"hint": hint} if hint else {})}}


def error_response(error: ApiError, headers: Any = None) -> JSONResponse:
    """An API error's answer."""
    body = error_body(error.status, error.message, error.hint)
    return JSONResponse(body, error.status, headers=headers)


def unexpected_error(method: str, path: str, error: Exception) -> JSONResponse:
    """A bug's answer, 500: what went wrong is logged, never sent."""
    log.exception("%s %s failed", method, path, exc_info=error)
    return JSONResponse(error_body(500, "internal error: the server log says more"), 500)


def database_error(error: psycopg.Error) -> ApiError | None:
    """The ApiError a database error means, or None when it is a bug (class 42 and others)."""
    state = error.sqlstate or ""
    status = SQLSTATE_STATUS.get(state) or SQLSTATE_STATUS.get(state[:2])
    if status is None:
        if isinstance(error, psycopg.OperationalError):
            return ApiError(503, f"the database is not reachable: {str(error).strip()}")
        return None
    message = error.diag.message_primary or str(error).strip()
    return ApiError(status, message, error.diag.message_hint)


def install_handlers(app: FastAPI, page: Callable[[Request, ApiError], Response]) -> None:
    """JSON errors for the API; for a page (a browser asking for HTML), `page` renders one."""

    def answer(request: Request, error: ApiError, headers: Any = None) -> Response:
        wants_page = not request.url.path.startswith("/api/") and "text/html" in (
            request.headers.get("accept", "")
        )
        if wants_page:
            return page(request, error)
        return error_response(error, headers)

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return answer(request, error)

    async def invalid_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or problem['loc'][0]}: "
            f"{problem['msg']}"
            for problem in error.errors()
        ]
        return answer(request, ApiError(400, "; ".join(problems)))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        headers = getattr(error, "headers", None)
        return answer(request, ApiError(error.status_code, str(error.detail)), headers)

    async def database(request: Request, error: Exception) -> Response:
        assert isinstance(error, psycopg.Error)
        known = database_error(error)
        if known is None:
            return await unexpected(request, error)
        return answer(request, known)

    async def unexpected(request: Request, error: Exception) -> Response:
        return unexpected_error(request.method, request.url.path, error)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(psycopg.Error, database)
    app.add_exception_handler(Exception, unexpected)
