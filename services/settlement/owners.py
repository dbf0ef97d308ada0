"""Settlement's replica of who owns each thing, and whether the owner is verified.

Fed by accounts' ``thing.*`` events and, for things the replica has not heard of yet, by the
``accounts.thing_owners`` RPC (``{"<thing_id>": {"owner_id", "verified"}}``). A share is paid to
an owner only when the owner is verified; an event without ``verified`` (from accounts before
ownership had to be proven) counts an owner as verified.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def verified(data: dict) -> bool:
    return bool(data.get("verified", data.get("owner_id") is not None))


def apply_event(session: Session, event: dict, deleted: bool) -> None:
    """A ``thing.*`` event into the replica; a late, older change never overwrites a newer one."""
    data = event["data"]
    session.execute(
        text(
            "INSERT INTO settlement.things (thing_id, owner_id, verified, deleted, changed_at) VALUES (:i, :o, :v, :d, :t) "
            "ON CONFLICT (thing_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, verified = EXCLUDED.verified, "
            "deleted = EXCLUDED.deleted, changed_at = EXCLUDED.changed_at WHERE settlement.things.changed_at < EXCLUDED.changed_at"
        ),
        {"i": data["thing_id"], "o": data.get("owner_id"), "v": verified(data), "d": deleted, "t": event["occurred_at"]},
    )


def remember(session: Session, owners: dict) -> None:
    """What accounts answered (``thing_owners``) into the replica. A thing we had not heard of goes
    in as the oldest possible state, so any ``thing.*`` event, even a late one, overrides it; an
    owner, or a verification, that accounts knows and we do not yet (its ``thing.claimed`` is on
    the way) is taken at once."""
    if not owners:
        return
    ids = [int(k) for k in owners]
    session.execute(
        text(
            "INSERT INTO settlement.things (thing_id, owner_id, verified, changed_at) "
            "SELECT t, o, v, '-infinity' FROM unnest(CAST(:t AS bigint[]), CAST(:o AS bigint[]), CAST(:v AS boolean[])) AS r(t, o, v) "
            "ON CONFLICT (thing_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, verified = EXCLUDED.verified "
            "WHERE EXCLUDED.owner_id IS NOT NULL "
            "AND (settlement.things.owner_id IS NULL OR (EXCLUDED.verified AND NOT settlement.things.verified))"
        ),
        {"t": ids, "o": [owners[str(i)]["owner_id"] for i in ids], "v": [bool(owners[str(i)]["verified"]) for i in ids]},
    )
