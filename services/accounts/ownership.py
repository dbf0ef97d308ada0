"""Claims: an unclaimed thing moves to the user its page names (the page check is ``claims``)."""
from __future__ import annotations

import eventlet
from sqlalchemy import select

from services.accounts import claims
from services.accounts.models import Thing, User
from services.accounts.things import commit_change, live_thing
from services.common.errors import ClaimRefused, Forbidden, InvalidParameters, NotFound, UserNotFound
from services.common.paging import MAX_ID


def _claimable(thing: Thing, user_id) -> None:
    if thing.owner_id == user_id:
        raise Forbidden("you already own this thing")
    if thing.owner_id is not None:
        raise Forbidden("this thing is already owned by someone else")


def claim_thing(db, events, user_id, thing_id, *, timeout: float, max_bytes: int, allow_private: bool) -> dict:
    """Move an unclaimed thing to ``user_id`` once its page names them.

    The page is fetched with no transaction open (it may take ``timeout``); then the thing's row
    is locked and checked again, so of two concurrent claims one wins and the other is told the
    thing is owned. ``thing.claimed`` is written in the same transaction."""
    if not isinstance(thing_id, int) or isinstance(thing_id, bool) or not 0 <= thing_id <= MAX_ID:
        raise NotFound("no such thing")
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise InvalidParameters("user_id must be an integer")
    thing = live_thing(db, thing_id)
    _claimable(thing, user_id)
    username = db.scalar(select(User.username).where(User.id == user_id))
    if username is None:
        raise UserNotFound("no such user")
    url = thing.url
    db.rollback()  # no transaction (nor pooled connection) is held while the page is fetched

    # the fetch keeps to its own deadline; this is the backstop for what sockets cannot bound
    # (a slow name server, a server trickling its headers)
    verified = None
    with eventlet.Timeout(timeout + 0.5, False):
        verified = claims.verify_claim(url, username, timeout=timeout, max_bytes=max_bytes, allow_private=allow_private)
    if verified is None:
        raise ClaimRefused(f"could not fetch: timed out after {timeout:g} seconds")

    thing = live_thing(db, thing_id, lock=True)
    _claimable(thing, user_id)
    thing.owner_id = user_id
    return commit_change(db, events, "thing.claimed", thing)
