"""Settings read from the environment, one place for their names and defaults."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DATABASE_URL_ENV = "SEMSQL_DATABASE_URL"
HOME_ENV = "SEMSQL_HOME"


def home() -> Path:
    """Folder for semsql's own state (the embedded server's data, its password, logs)."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return platformdirs.user_data_path("semsql")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
