"""Click counts from the click path (``things.counted``), kept for the flattr sorts of the search."""
from __future__ import annotations

from sqlalchemy import text

from services.common.events import first_seen_many


def apply_counted(db, events: list[dict]) -> None:
    """Add a batch of ``things.counted`` events to the daily and all-time counts, in one
    transaction. Rows are locked in key order, in both tables, so two batches applied at once
    wait instead of deadlocking; a redelivered event is skipped."""
    per_day: dict[tuple[int, str, str], int] = {}
    for event in first_seen_many(db, "accounts", events, "things.counted"):
        data = event["data"]
        for thing_id, n in data["counts"]:
            key = (int(thing_id), data["day"], data["period"])
            per_day[key] = per_day.get(key, 0) + int(n)
    if per_day:
        keys = sorted(per_day)
        db.execute(
            text(
                "INSERT INTO accounts.thing_daily_counts (thing_id, day, period, flattrs) "
                "SELECT c.t, c.d, c.p, c.n FROM unnest(CAST(:t AS bigint[]), CAST(:d AS date[]), CAST(:p AS text[]), CAST(:n AS bigint[])) "
                "WITH ORDINALITY AS c(t, d, p, n, i) ORDER BY c.i "
                "ON CONFLICT (thing_id, day, period) DO UPDATE SET flattrs = accounts.thing_daily_counts.flattrs + EXCLUDED.flattrs"
            ),
            {"t": [k[0] for k in keys], "d": [k[1] for k in keys], "p": [k[2] for k in keys], "n": [per_day[k] for k in keys]},
        )
        per_thing: dict[int, int] = {}
        for (thing_id, _, _), n in per_day.items():
            per_thing[thing_id] = per_thing.get(thing_id, 0) + n
        rows = {"ids": sorted(per_thing), "ns": [per_thing[t] for t in sorted(per_thing)]}
        db.execute(text("SELECT id FROM accounts.things WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR UPDATE"), rows)
        db.execute(
            text(
                "UPDATE accounts.things t SET flattrs = t.flattrs + c.n "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:ns AS bigint[])) AS c(id, n) WHERE t.id = c.id"
            ),
            rows,
        )
    db.commit()
