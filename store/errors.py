"""The errors every store raises, SQLite or PostgreSQL."""


class DatabaseUnavailable(Exception):
    "The database cannot take the write now (locked past the bound, disk full, read-only, server down)"


class DatabaseOpenError(DatabaseUnavailable):
    "The database cannot be used at all: missing, a directory, not SQLite, unreadable, refused"
