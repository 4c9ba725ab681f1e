"""The errors every store raises, SQLite or PostgreSQL."""

import sqlite3

import psycopg


class DatabaseUnavailable(Exception):
    "The database cannot take the write now (locked past the bound, disk full, read-only, server down)"


class DatabaseOpenError(DatabaseUnavailable):
    "The database cannot be used at all: missing, a directory, not SQLite, unreadable, refused"


class DatabaseUrlError(DatabaseOpenError):
    "The database URL cannot be parsed (an unencoded special character in the password): a usage error"


# What either store's driver raises when a statement fails (a missing table, a bad file):
# callers that turn such errors into one line catch both.
DRIVER_ERRORS = (sqlite3.Error, psycopg.Error)
