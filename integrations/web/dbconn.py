"""The database connection a request uses."""

from __future__ import annotations

from flask import current_app

from integrations.config import Config
from store.db import Store, thread_db


def settings() -> Config:
    """The app's Config."""
    config: Config = current_app.config["SETTINGS"]
    return config


def get_db() -> Store:
    """This thread's connection (kept open across requests: opening one costs more than the insert)."""
    config = settings()
    return thread_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds)
