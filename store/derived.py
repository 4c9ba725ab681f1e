"""Derived attendance tables (issue 8). Placeholder until the attendance engine lands."""

from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils


def refresh_instances(db: sqlite_utils.Database, instance_uuids: Iterable[str]) -> None:
    """Recompute the derived tables of these instances from the evidence."""
    # Filled in by the attendance-engine work (issues 4 and 8).
    return None
