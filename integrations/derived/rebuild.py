"""`rebuild`: normalize the raw webhook evidence again, then recompute the derived tables (issue 8)."""

from __future__ import annotations

from collections.abc import Sequence

from integrations.derived.refresh import rebuild
from integrations.funnel.stages import refresh_funnel
from integrations.ingest.normalize import normalize_delivery, normalize_pending
from store.db import Store
from store.derived import RefreshStats, webhook_deliveries
from store.events import save_normalized
from store.funnel import drop_funnel


def renormalize(db: Store, instance_uuids: Sequence[str] | None = None, *, batch: int = 500) -> int:
    """Normalize stored deliveries again (all, or those of these instances); returns how many.

    `save_normalized` replaces each delivery's own rows, so this is idempotent, and unlike
    resetting the normalization cursor it cannot race a worker normalizing at the same time.
    """
    normalize_pending(db)
    count, after = 0, 0
    while True:
        rows = webhook_deliveries(db, after_id=after, limit=batch, instance_uuids=instance_uuids)
        if not rows:
            return count
        save_normalized(db, [normalize_delivery(i, bytes(body)) for i, body in rows])
        count += len(rows)
        after = rows[-1][0]


def rebuild_attendance(
    db: Store, instance_uuids: Sequence[str] | None = None, stats: RefreshStats | None = None
) -> tuple[int, list[str]]:
    """Renormalize, then drop and recompute derived rows; returns (deliveries, instances rebuilt).

    Quiz scores and funnel rows (issue 16) are dropped and recomputed after attendance.
    """
    deliveries = renormalize(db, instance_uuids)
    done = rebuild(db, instance_uuids, stats)
    drop_funnel(db, done)
    refresh_funnel(db, done)
    return deliveries, done
