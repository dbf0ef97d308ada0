"""Announcing click counts to accounts (the ``flattrs*`` and ``trend`` search sorts).

Click workers and the subscription run add one row per thing per batch to ``clicks.count_deltas``
in the transaction that stores the clicks: an insert, so no worker waits on another's row lock.
``announce`` takes every committed delta out in one statement and records their sums as
``things.counted`` events through the outbox, in the same transaction: a count is announced once,
or (if the transaction fails) stays to be announced next time. One event per interval however
many clicks came in, so accounts applies a handful of events a second at any click rate, and a
backlog after an outage is a few events, not one per batch.
"""
from __future__ import annotations

from sqlalchemy import text

from services.common.outbox import Outbox

# things per event: keeps one event's body (and accounts' statement) small on a large catalog
MAX_THINGS_PER_EVENT = 5000

_TAKE = text(
    """
    WITH taken AS (DELETE FROM clicks.count_deltas RETURNING thing_id, day, period, flattrs)
    SELECT day, period, thing_id, sum(flattrs) AS flattrs FROM taken GROUP BY day, period, thing_id ORDER BY day, period, thing_id
    """
)


def announce(session, events: Outbox) -> int:
    """Record the counted-but-unannounced clicks as ``things.counted`` events; returns how many
    events. Runs in the caller's transaction; the caller commits."""
    groups: dict[tuple[str, str], list[list[int]]] = {}
    for row in session.execute(_TAKE):
        groups.setdefault((row.day.isoformat(), row.period), []).append([row.thing_id, int(row.flattrs)])
    recorded = 0
    for (day, period), counts in groups.items():
        for start in range(0, len(counts), MAX_THINGS_PER_EVENT):
            events.record(session, "things.counted", {"period": period, "day": day, "counts": counts[start : start + MAX_THINGS_PER_EVENT]})
            recorded += 1
    return recorded
