"""What every route needs: the settings, the database pools, uploads and the thumbnail cache."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from semsql.serve.db import Database
from semsql.serve.settings import ServeSettings
from semsql.serve.thumbnails import ThumbnailCache
from semsql.serve.uploads import Uploads


@dataclass(frozen=True)
class Context:
    settings: ServeSettings
    database: Database
    uploads: Uploads
    thumbnails: ThumbnailCache


async def context(request: Request) -> Context:
    """Async, as every dependency that does no I/O: FastAPI runs a plain function in a thread."""
    found: Context = request.app.state.context
    return found
