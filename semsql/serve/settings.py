"""What `semsql serve` is configured with, and the rule that guards a public address."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from semsql import config
from semsql.probe import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

SECRET_FILE = "serve-secret"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
TOKEN_ENV = "SEMSQL_SERVE_TOKEN"
MEDIA_ENV = "SEMSQL_MEDIA_DIR"
MIN_TOKEN_LENGTH = 16
READER_ROLE = "semsql_analyst"
WRITER_ROLE = "semsql_editor"


class SettingsError(ValueError):
    """A setting that would make the server unsafe or unusable: refused before it starts."""


@dataclass(frozen=True)
class ServeSettings:
    media_dir: Path
    thumbnail_dir: Path
    database_url: str | None = None
    token: str | None = None
    max_upload_bytes: int = 512 * 2**20
    """The most one upload request may carry, every file together (413 above)."""
    max_files: int = 200
    """The most files one upload request may carry (413 above)."""
    max_file_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    pool_size: int = 8
    reader_role: str = READER_ROLE
    writer_role: str = WRITER_ROLE
    csrf_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


def default_settings(
    media_dir: Path | None = None, token: str | None = None, database_url: str | None = None
) -> ServeSettings:
    """Settings with semsql's home for the media folder and the thumbnail cache."""
    home = config.home()
    home.mkdir(parents=True, exist_ok=True)
    media = (media_dir or home / "media").expanduser()
    media.mkdir(parents=True, exist_ok=True)
    thumbnails = home / "thumbnails"
    thumbnails.mkdir(parents=True, exist_ok=True)
    return ServeSettings(
        media_dir=media.resolve(),
        thumbnail_dir=thumbnails.resolve(),
        database_url=database_url,
        token=token or None,
        csrf_secret=stored_secret(home / SECRET_FILE),
    )


def stored_secret(path: Path) -> bytes:
    """The key of the CSRF tokens, made once: every worker process, and a restarted server,
    accept the tokens of the pages they served."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it meanwhile
        return path.read_bytes()
    with os.fdopen(handle, "wb") as out:
        out.write(secrets.token_bytes(32))
    return path.read_bytes()


def check_bind(host: str, token: str | None) -> None:
    """Only loopback without a token: any other address would open the library to the
    network, so it needs one (and a guessable one is refused)."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"the token must be at least {MIN_TOKEN_LENGTH} characters "
            '(e.g. python -c "import secrets; print(secrets.token_urlsafe())")'
        )
    if host not in LOOPBACK_HOSTS and token is None:
        raise SettingsError(
            f"refusing to serve on {host} without a token: give --token or {TOKEN_ENV} "
            "(or bind to 127.0.0.1)"
        )
