"""What the web pages show of a reader's clicks and of a creator's counts this period, and a
reader's clicks for their data export. Plain functions over the clicks schema."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.clicks.periods import month_end
from services.common.times import unix

MAX_PERIOD_CLICKS = 10000


def open_period(session: Session) -> dict:
    row = session.execute(text("SELECT id, starts_at FROM clicks.periods WHERE state = 'open'")).first()
    return {"id": row.id, "starts_at": unix(row.starts_at), "closes_at": unix(month_end(row.starts_at))}


def reader_period(session: Session, user_id: int) -> dict:
    """The open period and the reader's clicks in it, newest first (at most ``MAX_PERIOD_CLICKS``)."""
    period = open_period(session)
    rows = session.execute(
        text(
            "SELECT thing_id, source, created_at FROM clicks.clicks WHERE period_id = :p AND user_id = :u "
            "ORDER BY created_at DESC, id DESC LIMIT :n"
        ),
        {"p": period["id"], "u": user_id, "n": MAX_PERIOD_CLICKS},
    )
    period["clicks"] = [{"thing_id": r.thing_id, "source": r.source, "created_at": unix(r.created_at)} for r in rows]
    return period


def period_counts(session: Session, thing_ids: list[int]) -> dict:
    """``{thing_id: flattrs in the open period}`` from the counters the click workers keep."""
    rows = session.execute(
        text(
            "SELECT c.thing_id, c.period_flattrs FROM clicks.thing_counters c JOIN clicks.periods p "
            "ON p.id = c.period_id AND p.state = 'open' WHERE c.thing_id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": thing_ids},
    )
    counts = {str(i): 0 for i in thing_ids}
    counts.update({str(r.thing_id): int(r.period_flattrs) for r in rows})
    return counts


def export(session: Session, user_id: int) -> dict:
    """Everything the clicks service holds about a reader: every click and every subscription."""
    clicks = session.execute(
        text("SELECT period_id, thing_id, source, created_at FROM clicks.clicks WHERE user_id = :u ORDER BY id"), {"u": user_id}
    )
    subscriptions = session.execute(
        text("SELECT thing_id, periods_left, paused, created_at FROM clicks.subscriptions WHERE user_id = :u ORDER BY id"),
        {"u": user_id},
    )
    return {
        "flattrs": [{"period": r.period_id, "thing_id": r.thing_id, "source": r.source, "created_at": unix(r.created_at)} for r in clicks],
        "subscriptions": [
            {"thing_id": r.thing_id, "months_left": r.periods_left, "paused": r.paused, "created_at": unix(r.created_at)}
            for r in subscriptions
        ],
    }
