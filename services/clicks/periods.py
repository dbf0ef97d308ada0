"""Periods: naming, the monthly boundary, and sealing. Rules are plain functions; ``seal`` runs SQL.

A period is a calendar month (UTC) unless ops close one early. Ids are short and URL-safe:
``2026-11`` for a month's first period, ``2026-11.2`` for the second begun in the same month.

Sealing is exact without stopping the workers: each worker batch holds ``OPEN_PERIOD_LOCK``
shared for the length of its transaction, and ``seal`` takes it alone, so it waits for every batch
that may still write into the period to commit, and every later batch finds the next period open.
The next period's partition of the clicks table (``services.clicks.partitions``) and its
subscription clicks are made in the same transaction.
"""
from __future__ import annotations

import io
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.clicks import partitions
from services.common.db import copy
from services.common.errors import InvalidParameters, NotFound

# Shared by every click batch (services.clicks.ingest), taken alone by the seal. PostgreSQL queues a
# lock request behind a waiting one it conflicts with: the seal waits for the batches in flight,
# and batches that come later wait for the seal. A share-locked period row did not queue them: a
# new sharer of a row gets in past a waiting updater, so the overlapping batches of busy workers
# held the seal off for as long as the clicks kept coming (tens of seconds and more, measured).
OPEN_PERIOD_LOCK = "hashtext('clicks:open_period')"


def month_key(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m")


def period_id(month: str, nth: int) -> str:
    return month if nth == 1 else f"{month}.{nth}"


def next_period_id(existing_ids: list[str], now: datetime) -> str:
    """The id of a period begun at ``now``, given the ids already used."""
    month = month_key(now)
    used = [pid for pid in existing_ids if pid == month or pid.startswith(month + ".")]
    return period_id(month, len(used) + 1)


def month_has_turned(starts_at: datetime, now: datetime) -> bool:
    """The scheduler closes the open period once the calendar month it began in is over."""
    return month_key(starts_at) != month_key(now) and now > starts_at


def month_end(starts_at: datetime) -> datetime:
    """When the monthly timer closes a period begun at ``starts_at``: the first instant of the
    next calendar month (UTC), from which ``month_has_turned`` holds."""
    start = starts_at.astimezone(timezone.utc)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc)


def seal(session: Session, expected: str | None = None) -> tuple[str, str] | None:
    """Seal the open period and open the next. Returns (sealed, next) or None if ``expected`` is
    no longer the open period (another replica sealed it first). The caller commits."""
    # first, before any other lock: an archive run detaching a partition finishes or waits
    partitions.lock_partitions(session)
    # then the batches in flight commit (later ones wait); the seal's time is read after this, so
    # every click of the period was made before it
    session.execute(text(f"SELECT pg_advisory_xact_lock({OPEN_PERIOD_LOCK})"))
    open_id = session.execute(text("SELECT id FROM clicks.periods WHERE state = 'open'")).scalar()
    if open_id is None or (expected is not None and open_id != expected):
        return None
    sealed = session.execute(
        text("UPDATE clicks.periods SET state = 'sealed', sealed_at = clock_timestamp() WHERE id = :i AND state = 'open' RETURNING id"),
        {"i": open_id},
    ).scalar()
    if sealed is None:
        return None
    now = session.execute(text("SELECT clock_timestamp()")).scalar()
    ids = list(session.execute(text("SELECT id FROM clicks.periods")).scalars())
    seq = session.execute(text("SELECT max(seq) FROM clicks.periods")).scalar() + 1
    next_id = next_period_id(ids, now)
    session.execute(
        text("INSERT INTO clicks.periods (id, seq, state, starts_at) VALUES (:i, :s, 'open', :t)"),
        {"i": next_id, "s": seq, "t": now},
    )
    partitions.ensure_partition(session, next_id)
    subscription_clicks(session, next_id)
    return sealed, next_id


def subscription_clicks(session: Session, period: str) -> int:
    """Flattr every active subscription's thing in the new period: ordinary clicks, with the same
    rules as any click (thing exists, not the reader's own, reader has means). Runs inside the
    seal, so it happens exactly once per period whatever the number of replicas."""
    made = session.execute(
        text(
            """
            WITH due AS (
                SELECT s.id, s.user_id, s.thing_id FROM clicks.subscriptions s
                JOIN clicks.things t ON t.thing_id = s.thing_id AND NOT t.deleted AND t.owner_id IS DISTINCT FROM s.user_id
                JOIN clicks.means m ON m.user_id = s.user_id AND m.has_means
                WHERE NOT s.paused AND (s.periods_left IS NULL OR s.periods_left > 0)
            ), ins AS (
                INSERT INTO clicks.clicks (period_id, user_id, thing_id, request_id, source)
                SELECT :p, user_id, thing_id, gen_random_uuid(), 'subscription' FROM due
                ON CONFLICT DO NOTHING RETURNING thing_id
            ), counted AS (
                INSERT INTO clicks.thing_counters AS tc (thing_id, flattrs, period_id, period_flattrs, last_flattr_at)
                SELECT thing_id, count(*), :p, count(*), now() FROM ins GROUP BY thing_id ORDER BY thing_id
                ON CONFLICT (thing_id) DO UPDATE SET flattrs = tc.flattrs + EXCLUDED.flattrs,
                    period_flattrs = CASE WHEN tc.period_id = EXCLUDED.period_id THEN tc.period_flattrs + EXCLUDED.period_flattrs
                                          ELSE EXCLUDED.period_flattrs END,
                    period_id = EXCLUDED.period_id, last_flattr_at = EXCLUDED.last_flattr_at
                RETURNING thing_id
            ), announced AS (
                INSERT INTO clicks.count_deltas (thing_id, day, period, flattrs)
                SELECT thing_id, (now() AT TIME ZONE 'UTC')::date, :p, count(*) FROM ins GROUP BY thing_id
                RETURNING 1
            ), used AS (
                UPDATE clicks.subscriptions SET periods_left = periods_left - 1
                WHERE id IN (SELECT id FROM due) AND periods_left IS NOT NULL RETURNING id
            )
            SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM counted) + 0 * (SELECT count(*) FROM announced) + 0 * (SELECT count(*) FROM used)
            """
        ),
        {"p": period},
    ).scalar()
    # subscriptions that have run their course end here
    session.execute(text("DELETE FROM clicks.subscriptions WHERE periods_left = 0"))
    return made


def export_page(session: Session, period: str, after: int | None, limit: int) -> dict:
    """One page of a sealed period's clicks for settlement: the clicks of the readers after reader
    ``after``, about ``limit`` rows, never splitting a reader across pages. Each row is
    ``user_id, thing_id, rank, clicks``: the click's position among the reader's clicks ordered by
    thing id (from 0) and the reader's number of clicks, which the split needs; computed here in
    index order, so neither side sorts a million rows. Returns ``{"rows": COPY text, "count",
    "last": the page's last reader, "done": no reader after this page}``."""
    found = session.execute(text("SELECT state, archived_at FROM clicks.periods WHERE id = :p"), {"p": period}).first()
    if found is None:
        raise NotFound("no such period")
    if found.state != "sealed":
        raise InvalidParameters("the period is still open")
    if found.archived_at is not None:
        raise InvalidParameters("the period's clicks were archived (python -m services.clicks.ops archive)")
    after = -1 if after is None else int(after)
    # the reader at the page's last row: the page runs to the end of that reader's clicks
    upto = session.execute(
        text(
            "SELECT user_id FROM clicks.clicks WHERE period_id = :p AND user_id > :a "
            "ORDER BY user_id, thing_id OFFSET :o LIMIT 1"
        ),
        {"p": period, "a": after, "o": limit - 1},
    ).scalar()
    bound = "" if upto is None else f"AND user_id <= {int(upto)}"
    cursor = session.connection().connection.dbapi_connection.cursor()
    query = cursor.mogrify(
        "SELECT user_id, thing_id, row_number() OVER (PARTITION BY user_id ORDER BY thing_id) - 1, count(*) OVER (PARTITION BY user_id) "
        f"FROM clicks.clicks WHERE period_id = %s AND user_id > {after} {bound} ORDER BY user_id, thing_id",
        (period,),
    ).decode()
    buffer = io.StringIO()
    copy(session, f"COPY ({query}) TO STDOUT", buffer)
    rows = buffer.getvalue()
    count = rows.count("\n")
    last = int(rows[rows.rstrip("\n").rfind("\n") + 1 :].split("\t")[0]) if count else None
    return {"rows": rows, "count": count, "last": last, "done": upto is None}
