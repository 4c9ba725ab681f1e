"""Acknowledged deliveries not yet in raw_records: the spool (SQLite) or the intake (PostgreSQL).

`backlog(db)` picks the one of the database's kind; readers catch up through it and
/healthz and the metrics report its depth and age the same way for both."""

from __future__ import annotations

from typing import Any

from integrations.ingest.intake import chain_waiting
from integrations.ingest.spool import import_spool, oldest_unimported, spool_status
from store.db import PostgresStore, Store
from store.intake import intake_status


class SpoolBacklog:
    """Deliveries in the web processes' spool files (SQLite, integrations/ingest/spool.py)."""

    name = "spool"

    def catch_up(self, db: Store) -> None:
        """Move every spooled delivery into raw_records."""
        import_spool(db)

    def status(self, db: Store) -> dict[str, Any]:
        """Files, bytes not yet imported and torn files (GET /healthz `spool`)."""
        return spool_status(db)

    def oldest(self, db: Store) -> str | None:
        """received_at of the oldest delivery not yet in raw_records, or None."""
        return oldest_unimported(db)


class IntakeBacklog:
    """Deliveries in the webhook_intake table (PostgreSQL, integrations/ingest/intake.py)."""

    name = "intake"

    def catch_up(self, db: Store) -> None:
        """Chain every delivery waiting in the intake."""
        assert isinstance(db, PostgresStore)
        chain_waiting(db)

    def status(self, db: Store) -> dict[str, Any]:
        """Deliveries waiting and the oldest one's received_at (GET /healthz `intake`)."""
        assert isinstance(db, PostgresStore)
        count, oldest = intake_status(db)
        return {"deliveries": count, "oldest_received_at": oldest}

    def oldest(self, db: Store) -> str | None:
        """received_at of the oldest delivery not yet in raw_records, or None."""
        assert isinstance(db, PostgresStore)
        return intake_status(db)[1]


_SPOOL, _INTAKE = SpoolBacklog(), IntakeBacklog()


def backlog(db: Store) -> SpoolBacklog | IntakeBacklog:
    """Where `db`'s acknowledged deliveries wait before raw_records."""
    return _INTAKE if isinstance(db, PostgresStore) else _SPOOL
