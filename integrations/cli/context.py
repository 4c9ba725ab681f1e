"""What every CLI command shares: the configuration and the store, each made once per run.

The click group puts one `App` in `ctx.obj`; commands take it with `@pass_app` and ask it
for what they need, so configuration is read and the database opened in one place.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from integrations.config import Config, ConfigError, load_config
from integrations.ingest.normalize import normalize_pending
from store.attendance_queries import BadQuery, UnknownMeeting
from store.audit import open_readonly
from store.db import DatabaseOpenError, DatabaseUnavailable, Store, open_db
from store.errors import DRIVER_ERRORS, DatabaseUrlError
from store.migrations import migrate
from store.postgres import first_line, redact, redact_text


class FiniteFloat(click.ParamType):
    """A float in [minimum, maximum]: nan and inf are refused (click's FloatRange lets nan through)."""

    name = "number"

    def __init__(self, minimum: float, maximum: float = math.inf):
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value, param, ctx):
        """The number, or a usage error naming the option."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            upper = "" if math.isinf(self.maximum) else f" and at most {self.maximum:g}"
            self.fail(f"{value!r} must be a finite number of at least {self.minimum:g}{upper}", param, ctx)
        return number


FINITE_MINUTES = FiniteFloat(0)
PERCENT = FiniteFloat(0, 100)


class App:
    """The configuration and the open stores of one CLI invocation."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._stores: dict[tuple[str, bool], Store] = {}

    @property
    def config(self) -> Config:
        """The configuration, loaded on first use; a bad value is one clear line."""
        if self._config is None:
            try:
                self._config = load_config()
            except ConfigError as e:
                raise click.ClickException(str(e)) from None
        return self._config

    def database_path(self, database: str | None = None) -> str:
        """`--database` when given, else the configured DATABASE_URL's file."""
        return database or self.config.database_path

    def store(self, database: str | None = None, *, normalize: bool = False, create: bool = True) -> Store:
        """The database, opened once and migrated; `normalize` first imports what webhooks stored.

        `create=False` is for commands that only read: a missing file is an error, and
        neither it nor its directory is created.
        """
        path = self.database_path(database)
        key = (path, False)
        if key not in self._stores:
            lock_timeout = self.config.db_lock_timeout_seconds if database is None else 2.0
            with user_errors():
                db = open_db(path, lock_timeout=lock_timeout, create=create)
            self._stores[key] = db
            with user_errors():
                try:
                    migrate(db)
                except DRIVER_ERRORS as e:
                    raise click.ClickException(f"cannot use database {redact(path)}: {first_line(e)}") from None
        db = self._stores[key]
        if normalize:
            with user_errors():
                normalize_pending(db)
        return db

    def existing_store(self, database: str | None = None, *, normalize: bool = False) -> Store:
        """Like `store`, but an error when the database file does not exist yet (read commands)."""
        return self.store(database, normalize=normalize, create=False)

    def readonly_store(self, database: str | None = None) -> Store:
        """The database opened read-only (verify and exports never write, even by accident)."""
        path = self.database_path(database)
        key = (path, True)
        if key not in self._stores:
            with user_errors():
                db = open_readonly(path)
            try:
                db.execute("SELECT 1 FROM raw_records LIMIT 1")
            except DRIVER_ERRORS as e:
                db.close()
                if "not a database" in str(e):
                    raise click.ClickException(f"{redact(path)} is not a SQLite database") from None
                message = first_line(e)
                raise click.ClickException(
                    f"cannot read {redact(path)} as an attendance-worker database: {message}"
                ) from None
            self._stores[key] = db
        return self._stores[key]

    def close(self) -> None:
        """Close every store this run opened."""
        for db in self._stores.values():
            db.close()
        self._stores.clear()


pass_app = click.make_pass_decorator(App, ensure=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors a user can act on become one line on stderr and exit 1, never a traceback."""
    try:
        yield
    except DatabaseUrlError as e:  # the operator typed it: a usage error
        raise click.UsageError(redact_text(str(e))) from None
    except (UnknownMeeting, BadQuery, DatabaseOpenError) as e:
        raise click.ClickException(redact_text(str(e))) from None
    except DatabaseUnavailable as e:
        raise click.ClickException(f"database busy or unavailable, try again: {redact_text(str(e))}") from None


# The worker.py beside this package: the one being run.
WORKER_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "worker.py")


def worker_command() -> str:
    """How to run worker.py again, for hints we print: this Python and this worker.py, by
    absolute paths, so the hint works whatever directory it is pasted in."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(WORKER_PY)}"
