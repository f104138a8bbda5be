"""What the `semsql serve` tests share: the app against the test's database, a running worker
with the tiny models, images to upload."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import skimage.data
from fastapi.testclient import TestClient
from PIL import Image

from semsql.embedder.worker import Worker, WorkerOptions
from semsql.serve.app import create_app
from semsql.serve.settings import ServeSettings

WORKER_STAGES = ("clip", "text", "content", "faces")


def settings_for(db_url: str, folder: Path, **changes: Any) -> ServeSettings:
    media, thumbnails = folder / "media", folder / "thumbnails"
    media.mkdir(exist_ok=True)
    thumbnails.mkdir(exist_ok=True)
    return ServeSettings(
        media_dir=media.resolve(), thumbnail_dir=thumbnails.resolve(), database_url=db_url,
        pool_size=4, **changes,
    )  # fmt: skip


@contextmanager
def serving(settings: ServeSettings, raise_server_exceptions: bool = True) -> Iterator[TestClient]:
    app = create_app(settings)
    base = "http://127.0.0.1:8000"
    with TestClient(app, base, raise_server_exceptions=raise_server_exceptions) as client:
        yield client


def only_stages(db_url: str, stages: tuple[str, ...]) -> None:
    """Jobs complete once these stages have run: the others are turned off."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = name = ANY(%s)", [list(stages)])


@contextmanager
def running_worker(
    db_url: str, models: dict[str, str], stages: tuple[str, ...] = WORKER_STAGES
) -> Iterator[Worker]:
    only_stages(db_url, stages)
    worker = Worker(db_url, WorkerOptions(stages=stages, poll_interval=0.2), models=models)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(120)
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)


def wait_for(check: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {timeout} s: {check}")
        time.sleep(every)


def jpeg(image: Image.Image, **options: Any) -> bytes:
    data = io.BytesIO()
    image.save(data, "JPEG", **options)
    return data.getvalue()


def astronaut_jpeg() -> bytes:
    return jpeg(Image.fromarray(skimage.data.astronaut()))


def coloured_png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    data = io.BytesIO()
    Image.new("RGB", size, colour).save(data, "PNG")
    return data.getvalue()


def start_server(settings: ServeSettings) -> tuple[Any, threading.Thread, str]:
    """The app on a real uvicorn server on a free loopback port, started in a thread: the
    server (to stop), its thread and its base URL."""
    import socket

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=60, every=0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@contextmanager
def live_server(settings: ServeSettings) -> Iterator[str]:
    """start_server's base URL; the server stopped afterwards."""
    server, thread, base = start_server(settings)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
