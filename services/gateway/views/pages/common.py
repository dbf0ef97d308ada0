"""What several pages need: the signed-in user, things with their counts, keys for forms."""
from __future__ import annotations

import uuid

from flask import flash, session

from services.common.errors import DomainError
from services.gateway import rpc
from services.gateway.views import ownership as ownership_checks


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


def check_and_say(method: str, target, passed: str, what: str) -> None:
    """Ask accounts for an ownership check (``request_claim`` or ``request_host``), wait for its
    outcome as the API does, and tell the user in words: ``passed`` (formatted with the check),
    the reason it failed, or that ``what`` is still being checked."""
    try:
        check = ownership_checks.outcome(rpc.call("accounts", method, me(), target), me())
    except DomainError as exc:
        flash(exc.description, "error")
        return
    if check["state"] == "passed":
        flash(passed.format(**check), "ok")
    elif check["state"] == "failed":
        flash(f"Not yet: {check['reason'] or 'the check failed'}", "error")
    else:
        flash(f"Still checking {what}: look again in a moment.", "ok")
