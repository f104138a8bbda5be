"""User errors on the command line: one line, `error: ...`, on stderr, and exit status 1.

Click's own usage errors (an unknown option, a value of the wrong type) keep click's message
and exit status 2. Errors of the user's input or surroundings become a UserError: what the SQL
functions raise for their caller (a bad argument, an unknown id, no worker), a lost or refused
connection, a model that cannot load, a file that cannot be read or written. Anything else is
a bug in semsql and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Any

import click
import psycopg

from semsql.embedded import EmbeddedServerError
from semsql.embedder.models.stages.errors import ModelLoadError
from semsql.migrate import MigrationError
from semsql.people import FaceInputError

# SQLSTATE classes (and codes) of errors about the call rather than semsql's own SQL: data
# exceptions (22: invalid_parameter_value, out of range), integrity (23: a name already taken),
# PL/pgSQL RAISE (P0: no_data_found, raise_exception), object_not_in_prerequisite_state (55),
# connection (08), read-only transaction (25), authorization (28), rollbacks worth retrying (40),
# resources (53), limits of the call's size (54: program_limit_exceeded, an over-long query
# text), cancels and shutdowns (57), and insufficient_privilege (42501). The rest of class 42
# (syntax, undefined objects) is a bug.
USER_SQLSTATES = ("22", "23", "P0", "55", "08", "25", "28", "40", "53", "54", "57", "42501")

MODEL_LIBRARIES = {"torch", "torchvision", "transformers", "facenet_pytorch", "timm"}


class UserError(click.ClickException):
    """A mistake in what the user asked for, or in their surroundings: one line, exit 1."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class

    def format_message(self) -> str:
        return " ".join(self.message.split())

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


def database_message(error: psycopg.Error) -> str:
    """The server's message and hint, without psycopg's CONTEXT lines."""
    message = error.diag.message_primary or str(error).strip()
    hint = error.diag.message_hint
    return message + (f" (hint: {hint})" if hint else "")


def as_user_error(error: BaseException) -> UserError | None:
    """The UserError that an exception means, or None when it is a bug."""
    if isinstance(error, psycopg.Error):
        if error.sqlstate is None:
            if isinstance(error, psycopg.OperationalError):  # the connection broke
                return UserError(f"database connection lost: {str(error).strip()}")
            return None
        if error.sqlstate.startswith(USER_SQLSTATES):
            return UserError(database_message(error))
        return None
    if isinstance(error, EmbeddedServerError):
        return UserError(f"the embedded PostgreSQL server: {error}")
    if isinstance(error, ModelLoadError | FaceInputError | MigrationError):
        return UserError(str(error))
    # A device this machine does not have (--device, SEMSQL_DEVICE). Its module imports torch,
    # so it is looked up only once something has imported it: before that, none was raised.
    device = sys.modules.get("semsql.embedder.models.device")
    if device is not None and isinstance(error, device.DeviceError):
        return UserError(str(error))
    if isinstance(error, ModuleNotFoundError) and error.name in MODEL_LIBRARIES:
        return UserError(
            f"this needs the models' libraries ({error.name} is not installed): "
            "pip install 'semsql[models]'"
        )
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return UserError(f"{error.strerror}{where}")
    return None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns the exceptions that are user errors into UserError; lets every other one through."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as error:
        user_error = as_user_error(error)
        if user_error is None:
            raise
        raise user_error from None
