"""Resolving a batch of click requests in one statement: the answers Flattr gave, decided exactly.

``resolve`` takes the requests of one batch and, in one SQL statement inside the caller's
transaction, judges each against the replicas (thing exists, owner, means), inserts the clicks
that pass (``ON CONFLICT DO NOTHING`` on period, reader and thing), updates the per-thing
counters, and returns one answer per request. The rules, first match wins:

    not_found, flattr_owner, flattr_once, no_means, else ok

A request carries its id (the AMQP correlation id) into the click row; when a worker dies after
committing and the request is delivered again, the stored id is recognised and the answer is
``ok`` again, not ``flattr_once``, also when a seal came between (``REDELIVERY_WINDOW_SECONDS``).
The statement reads the partitions of the open period and of the periods sealed within that
window only (``services.clicks.partitions``), so its cost does not grow with the periods kept.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.clicks.periods import OPEN_PERIOD_LOCK

OK, NOT_FOUND, OWNER, ONCE, NO_MEANS = "ok", "not_found", "flattr_owner", "flattr_once", "no_means"
# the caller gave up (and answered 503) before the request reached the database: not carried out
EXPIRED = "expired"
# the request could not be judged (the owner of its thing or reader could not be asked): not carried out
UNAVAILABLE = "unavailable"
SOURCES = ("api", "button", "subscription")


@dataclass(frozen=True)
class ClickRequest:
    request_id: str
    user_id: int
    thing_id: int
    source: str = "api"
    deadline: float | None = None  # Unix time after which the caller no longer waits


class NoOpenPeriod(Exception):
    """No period is open (none was opened yet): the batch is tried again."""


# A redelivered request is looked for in the periods sealed this long ago or since: a request is
# redelivered within its deadline (seconds), so a day covers any redelivery across a seal while
# the click path reads a bounded number of partitions, however many periods the table keeps.
# Defined once, for the click statement and for the recheck after a concurrent batch.
REDELIVERY_WINDOW_SECONDS = 86400
_REDELIVERY_PERIODS = f"state = 'open' OR sealed_at > now() - interval '{REDELIVERY_WINDOW_SECONDS} seconds'"

# First the lock a seal takes alone (services.clicks.periods): it waits for this batch to commit,
# or this batch for a seal already waiting or under way. A statement of its own, so that the next
# one reads the periods as a seal that committed meanwhile left them.
_SHARE_OPEN_PERIOD = f"SELECT pg_advisory_xact_lock_shared({OPEN_PERIOD_LOCK})"
# The open period and the periods sealed within the redelivery window.
_PERIODS = f"SELECT id, state FROM clicks.periods WHERE {_REDELIVERY_PERIODS}"

# The periods' ids are literals ({open_period}, {recent_periods}), not parameters, so the planner
# reads only their partitions of the clicks table.
_RESOLVE = """
WITH req (idx, request_id, user_id, thing_id, source) AS (
    VALUES {values}
), judged AS (
    SELECT r.idx, r.request_id, r.user_id, r.thing_id, r.source,
           t.thing_id IS NOT NULL AND NOT t.deleted AS found,
           t.owner_id, t.url, t.title,
           coalesce(m.has_means, false) AS has_means,
           m.user_id IS NOT NULL AS means_known,
           prior.hit IS NOT NULL AS stored_before
    FROM req r
    LEFT JOIN clicks.things t ON t.thing_id = r.thing_id
    LEFT JOIN clicks.means m ON m.user_id = r.user_id
    -- the same request stored earlier (a redelivery), in the open period or one sealed lately
    -- (LATERAL: one index probe per request and partition; a join would let the planner hash a
    -- whole month of clicks for a batch of a few hundred)
    LEFT JOIN LATERAL (
        SELECT 1 AS hit FROM clicks.clicks p WHERE p.request_id = r.request_id AND p.period_id IN ({recent_periods}) LIMIT 1
    ) prior ON true
), candidates AS (
    SELECT DISTINCT ON (user_id, thing_id) idx, request_id, user_id, thing_id, source FROM judged
    WHERE found AND owner_id IS DISTINCT FROM user_id AND has_means AND NOT stored_before
    ORDER BY user_id, thing_id, idx
), ins AS (
    INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id, source)
    SELECT {open_period}, c.user_id, c.thing_id, c.request_id, c.source FROM candidates c
    ON CONFLICT DO NOTHING
    RETURNING user_id, thing_id, request_id
), counted AS (
    -- in thing order: two batches sharing things lock their counters in the same order
    INSERT INTO clicks.thing_counters AS tc (thing_id, flattrs, period_id, period_flattrs, last_flattr_at)
    SELECT ins.thing_id, count(*), {open_period}, count(*), now() FROM ins GROUP BY ins.thing_id ORDER BY ins.thing_id
    ON CONFLICT (thing_id) DO UPDATE SET
        flattrs = tc.flattrs + EXCLUDED.flattrs,
        period_flattrs = CASE WHEN tc.period_id = EXCLUDED.period_id THEN tc.period_flattrs + EXCLUDED.period_flattrs
                              ELSE EXCLUDED.period_flattrs END,
        period_id = EXCLUDED.period_id,
        last_flattr_at = EXCLUDED.last_flattr_at
    RETURNING thing_id, flattrs
), announced AS (
    -- the batch's counts, announced to accounts (the search sorts) by services.clicks.counts
    INSERT INTO clicks.count_deltas (thing_id, day, period, flattrs)
    SELECT thing_id, (now() AT TIME ZONE 'UTC')::date, {open_period}, count(*) FROM ins GROUP BY thing_id
    RETURNING 1
)
SELECT j.idx, j.found, j.owner_id, j.has_means, j.means_known, j.stored_before, j.url, j.title,
       ins.request_id = j.request_id AS inserted,
       ins.request_id IS NOT NULL AS inserted_by_batch,
       before.request_id AS existing_request,
       coalesce(counted.flattrs, tc.flattrs, 0) AS flattrs,
       {open_period}::text AS period_id
FROM judged j
LEFT JOIN ins ON ins.user_id = j.user_id AND ins.thing_id = j.thing_id
LEFT JOIN LATERAL (
    SELECT b.request_id FROM clicks.clicks b
    WHERE b.period_id = {open_period} AND b.user_id = j.user_id AND b.thing_id = j.thing_id LIMIT 1
) before ON true
LEFT JOIN counted ON counted.thing_id = j.thing_id
LEFT JOIN clicks.thing_counters tc ON tc.thing_id = j.thing_id
"""


def _values(cursor, requests: list[ClickRequest]) -> str:
    row = "(%s, %s::uuid, %s::bigint, %s::bigint, %s)"
    return ",".join(
        cursor.mogrify(row, (i, r.request_id, r.user_id, r.thing_id, r.source)).decode() for i, r in enumerate(requests)
    )


def answer(row, request: ClickRequest) -> dict:
    """One request's answer from its row of the statement (the rules, first match wins).
    ``unsure`` marks answers the replicas could not give for certain: a thing or a reader they
    have not heard of yet, to be asked about and resolved again."""
    if not row.found:
        return {"status": NOT_FOUND, "unsure": True}
    thing = {"id": request.thing_id, "url": row.url, "title": row.title, "flattrs": row.flattrs}
    if row.owner_id == request.user_id:
        return {"status": OWNER, "thing": thing}
    if row.inserted or row.stored_before or row.existing_request == request.request_id:
        return {"status": OK, "thing": thing, "period": row.period_id}
    if row.existing_request is not None or row.inserted_by_batch:
        return {"status": ONCE, "thing": thing}
    if not row.has_means:
        return {"status": NO_MEANS, "thing": thing, "unsure": not row.means_known}
    # a concurrent batch stored the same click between our snapshot and our insert: maybe this
    # very request (delivered twice), which the caller checks once the batch is committed
    return {"status": ONCE, "thing": thing, "recheck": True}


class _Row:
    __slots__ = ("idx", "found", "owner_id", "has_means", "means_known", "stored_before", "url", "title", "inserted", "inserted_by_batch", "existing_request", "flattrs", "period_id")

    def __init__(self, values):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)


def resolve(cursor, requests: list[ClickRequest]) -> list[dict]:
    """Answers for ``requests``, in order. Runs in the caller's transaction; the caller commits."""
    if not requests:
        return []
    open_period, recent = _periods(cursor)
    cursor.execute(
        _RESOLVE.format(
            values=_values(cursor, requests),
            open_period=cursor.mogrify("%s", (open_period,)).decode(),
            recent_periods=",".join(cursor.mogrify("%s", (p,)).decode() for p in recent),
        )
    )
    rows = [_Row(values) for values in cursor.fetchall()]
    by_index = {row.idx: row for row in rows}
    return [answer(by_index[i], request) for i, request in enumerate(requests)]


def _periods(cursor) -> tuple[str, list[str]]:
    """The open period, which no seal closes before this batch commits, and the ids of the
    periods a redelivery is looked for in."""
    cursor.execute(_SHARE_OPEN_PERIOD)
    cursor.execute(_PERIODS)
    found = cursor.fetchall()
    open_ids = [pid for pid, state in found if state == "open"]
    if not open_ids:
        raise NoOpenPeriod()
    return open_ids[0], [pid for pid, _ in found]


def stored_requests(cursor, request_ids: list[str]) -> set[str]:
    """Which of ``request_ids`` are stored, in the periods a redelivery is looked for in."""
    cursor.execute(
        "SELECT request_id::text FROM clicks.clicks WHERE request_id = ANY(%s::uuid[]) AND period_id IN "
        f"(SELECT id FROM clicks.periods WHERE {_REDELIVERY_PERIODS})",
        (request_ids,),
    )
    return {r[0] for r in cursor.fetchall()}


def missing_things(cursor, thing_ids: list[int]) -> list[int]:
    cursor.execute("SELECT thing_id FROM clicks.things WHERE thing_id = ANY(%s)", (list(set(thing_ids)),))
    known = {r[0] for r in cursor.fetchall()}
    return sorted(set(thing_ids) - known)


def missing_means(cursor, user_ids: list[int]) -> list[int]:
    cursor.execute("SELECT user_id FROM clicks.means WHERE user_id = ANY(%s)", (list(set(user_ids)),))
    known = {r[0] for r in cursor.fetchall()}
    return sorted(set(user_ids) - known)


def backfill_things(cursor, things: list[dict]) -> None:
    """Things the replica had not heard of yet, as their owner answered. ``-infinity`` as the
    change time lets any event, however early it was stamped, win over this copy."""
    for thing in things:
        cursor.execute(
            "INSERT INTO clicks.things (thing_id, owner_id, url, title, deleted, changed_at) "
            "VALUES (%s, %s, %s, %s, false, '-infinity') ON CONFLICT DO NOTHING",
            (thing["id"], (thing.get("owner") or {}).get("id"), thing["url"], thing["title"]),
        )


def backfill_means(cursor, means: dict) -> None:
    for user_id, has_means in means.items():
        cursor.execute(
            "INSERT INTO clicks.means (user_id, has_means, changed_at) VALUES (%s, %s, '-infinity') ON CONFLICT DO NOTHING",
            (int(user_id), bool(has_means)),
        )
