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


def context(request: Request) -> Context:
    found: Context = request.app.state.context
    return found
