"""Verified hosts as the catalog reads them: who holds a host, and whose a new thing is."""
from __future__ import annotations

from sqlalchemy import delete, select

from services.accounts.models import VerifiedHost
from services.accounts.sites import host_of_url
from services.common.errors import Forbidden, NotFound
from services.common.times import unix

TAKEN = "this thing's host is verified by another user"


def holder(db, host: str | None) -> int | None:
    """The user who verified ``host`` (a host key), or None."""
    if host is None:
        return None
    return db.scalar(select(VerifiedHost.user_id).where(VerifiedHost.host == host))


def owner_of_new_thing(db, url: str, claimant: int | None) -> tuple[int | None, bool, str | None]:
    """``(owner_id, verified, host)`` for a thing about to be registered at ``url`` by
    ``claimant`` (None: flattred by URL, nobody claims it). On a verified host the thing is its
    holder's, verified; nobody else may register one there. Elsewhere the claimant owns it
    unverified (or nobody does)."""
    host = host_of_url(url)
    held_by = holder(db, host)
    if claimant is None:
        return held_by, held_by is not None, host
    if held_by is not None and held_by != claimant:
        raise Forbidden(TAKEN)
    return claimant, held_by == claimant, host


def host_dict(row: VerifiedHost) -> dict:
    return {"host": row.host, "method": row.method, "verified_at": unix(row.verified_at)}


def list_hosts(db, user_id) -> list[dict]:
    rows = db.scalars(select(VerifiedHost).where(VerifiedHost.user_id == user_id).order_by(VerifiedHost.host))
    return [host_dict(r) for r in rows]


def held(db, user_id, host: str) -> VerifiedHost | None:
    return db.scalar(select(VerifiedHost).where(VerifiedHost.host == host, VerifiedHost.user_id == user_id))


def give_up(db, user_id, host: str) -> None:
    """The user no longer holds ``host``. Their things on it stay verified (they were proven);
    new things there are no longer verified at once, and someone else may verify the host."""
    result = db.execute(delete(VerifiedHost).where(VerifiedHost.host == host, VerifiedHost.user_id == user_id))
    if result.rowcount == 0:
        raise NotFound("you have not verified this host")
    db.commit()
