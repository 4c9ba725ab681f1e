"""How a webhook request stores its delivery: through this process's group commit, so
concurrent request threads share one transaction and one fsync (store/group_commit.py).
"""

from __future__ import annotations

import os
import threading

from integrations.config import Config
from store.db import thread_db
from store.evidence import Delivery, StoredRecord
from store.group_commit import GroupCommit

_groups: dict[tuple[int, str], GroupCommit] = {}
_guard = threading.Lock()


def store_webhook(delivery: Delivery, config: Config) -> StoredRecord:
    """Store `delivery` durably; raises DatabaseUnavailable when it cannot be stored now."""
    return group_commit(config).store(delivery)


def group_commit(config: Config) -> GroupCommit:
    """This process's GroupCommit for the configured database (a forked worker gets its own)."""
    key = (os.getpid(), config.database_path)
    group = _groups.get(key)
    if group is None:
        with _guard:
            group = _groups.get(key)
            if group is None:
                group = _groups[key] = GroupCommit(
                    lambda: thread_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds),
                    timeout=config.db_lock_timeout_seconds,
                )
    return group
