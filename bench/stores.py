"""Where a benchmark's databases live: SQLite files, or PostgreSQL (issue 19).

`--postgres` starts a throwaway server (tests/pg_support.PgServer: Debian's postgresql in a
fresh data directory on 127.0.0.1) for the run; `--database-url` names an existing server
whose user may create databases. Each named database is made once, empty.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from store.db import open_db  # noqa: E402
from store.postgres import is_postgres_url  # noqa: E402
from tests.pg_support import PgServer  # noqa: E402


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """--postgres and --database-url on a benchmark's command line."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--postgres", action="store_true", help="run against a throwaway PostgreSQL server")
    group.add_argument(
        "--database-url", metavar="URL", help="run against this PostgreSQL server (postgresql://...; new databases)"
    )


class BenchStores:
    """Databases by name: files in a temporary directory, or databases on one PostgreSQL server."""

    def __init__(self, directory: str, server_url: str | None):
        self.directory = directory
        self.server_url = server_url  # a PostgreSQL URL whose database part is replaced per name
        self._made: dict[str, str] = {}

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.server_url else "SQLite"

    def location(self, name: str) -> str:
        """The open_db location of the database called `name`, created empty on first use."""
        if self.server_url is None:
            return os.path.join(self.directory, name)
        if name not in self._made:
            dbname = "bench_" + "".join(c if c.isalnum() else "_" for c in name) + f"_{os.getpid()}"
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
                conn.execute(f'CREATE DATABASE "{dbname}"')
            self._made[name] = self.server_url.rsplit("/", 1)[0] + "/" + dbname
        return self._made[name]

    def database_url(self, name: str) -> str:
        """DATABASE_URL for the database called `name`."""
        location = self.location(name)
        return location if is_postgres_url(location) else f"sqlite:///{location}"

    def size_mib(self, name: str) -> float:
        """The database's size (file and WAL, or the server's pg_database_size)."""
        db = open_db(self.location(name))
        try:
            return db.size_bytes() / 2**20
        finally:
            db.close()


@contextlib.contextmanager
def bench_stores(args: argparse.Namespace, prefix: str) -> Iterator[BenchStores]:
    """The stores the command line asked for; a throwaway server is stopped and removed at the end."""
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        if args.database_url:
            yield BenchStores(directory, args.database_url)
        elif args.postgres:
            server = PgServer()
            try:
                yield BenchStores(directory, server.url())
            finally:
                server.close()
        else:
            yield BenchStores(directory, None)
