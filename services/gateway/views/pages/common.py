"""What several pages need: the signed-in user, things with their counts, keys for forms."""
from __future__ import annotations

import uuid

from flask import session

from services.gateway import rpc


def me() -> int:
    return session["user_id"]


def things_by_id(ids) -> dict[int, dict]:
    """The live things among ``ids`` (any number), by id."""
    ids = sorted(set(ids))
    found: dict[int, dict] = {}
    for start in range(0, len(ids), 100):
        for thing in rpc.call("accounts", "get_things", ids[start : start + 100]):
            found[thing["id"]] = thing
    return found


def with_counts(things: list[dict], user_id: int | None = None) -> list[dict]:
    """Things with ``flattrs`` (all time) and, for a user, ``flattred`` (this period), from clicks."""
    if not things:
        return []
    counts: dict = {}
    ids = [t["id"] for t in things]
    for start in range(0, len(ids), 100):
        counts.update(rpc.call("clicks", "counts", ids[start : start + 100], user_id))
    return [dict(t, **counts.get(str(t["id"]), {})) for t in things]


def form_key() -> str:
    """An idempotency key for a money form, rendered into it: submitting the same form twice
    (a double click, a reload) makes one deposit or payout."""
    return uuid.uuid4().hex


def signed_in() -> bool:
    return "user_id" in session
