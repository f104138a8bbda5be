"""The application: API routes, pages, static files, behind the guard (token, CSRF, sizes)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from semsql import __version__, database
from semsql.serve import api, pages
from semsql.serve.context import Context
from semsql.serve.db import Database
from semsql.serve.errors import install_handlers
from semsql.serve.fast import SearchRoute
from semsql.serve.guard import Guard
from semsql.serve.settings import MEDIA_ENV, TOKEN_ENV, ServeSettings, default_settings
from semsql.serve.thumbnails import ThumbnailCache
from semsql.serve.uploads import Uploads

HERE = Path(__file__).parent
UPLOAD_PATHS = frozenset({"/api/assets", "/api/search/image"})


def create_app(settings: ServeSettings) -> FastAPI:
    """The app; its database pools open when it starts (uvicorn's lifespan, or TestClient)."""
    db = Database(
        settings.database_url or database.database_url(),
        settings.reader_role,
        settings.writer_role,
        settings.pool_size,
    )
    ctx = Context(settings, db, Uploads(settings, db), ThumbnailCache(settings.thumbnail_dir))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        await db.open_async()
        try:
            yield
        finally:
            ctx.uploads.close()
            await db.close_async()
            db.close()

    app = FastAPI(
        title="semsql",
        version=__version__,
        description="Search a library of images by meaning, inside PostgreSQL.",
        lifespan=lifespan,
    )
    app.state.context = ctx
    install_handlers(app, pages.error_page)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(SearchRoute, context=ctx)  # inside the guard: added first
    app.add_middleware(Guard, settings=settings, upload_paths=UPLOAD_PATHS)
    return app


def app_from_environment() -> FastAPI:
    """The app as `semsql serve` configures it (uvicorn's factory, in each worker process):
    SEMSQL_SERVE_TOKEN, SEMSQL_MEDIA_DIR and the database settings of every command."""
    media = os.environ.get(MEDIA_ENV)
    return create_app(default_settings(Path(media) if media else None, os.environ.get(TOKEN_ENV)))
