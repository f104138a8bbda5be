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
