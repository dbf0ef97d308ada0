"""Ownership, proven: who may claim a thing, and what a passed check changes.

A thing's owner is *verified* once its page or its host named them (``page_checks``); only a
verified owner is paid (settlement reads ``verified`` from the thing events and from
``thing_owners``). The rules:

- a thing with a verified owner cannot be claimed (``you already own this thing`` /
  ``already owned by someone else``);
- a thing without an owner, or with an unverified one, goes to whoever's page check passes
  first: its registering user verifying it, or another user taking it over (and its escrow);
- on a host someone verified, only they may claim or register things; verifying a host makes
  its holder the verified owner of every thing there that had no verified owner.

Every change of owner or of ``verified`` is a ``thing.claimed`` event, in the transaction that
makes it. The functions here do not commit: the verification that led to them is finished in the
same transaction (``verifications.finish``).
"""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert

from services.accounts import hosts
from services.accounts.models import Thing, VerifiedHost
from services.accounts.things import live_thing, record_change
from services.common.errors import Forbidden


def check_claimable(db, thing: Thing, user_id: int) -> int | None:
    """Refuse a claim of ``thing`` by ``user_id`` that could not succeed, before anything is
    fetched; returns the holder of the thing's host (None if unverified)."""
    if thing.owner_verified and thing.owner_id == user_id:
        raise Forbidden("you already own this thing")
    if thing.owner_verified:
        raise Forbidden("this thing is already owned by someone else")
    holder = hosts.holder(db, thing.host)
    if holder is not None and holder != user_id:
        raise Forbidden(hosts.TAKEN)
    return holder


def _make_verified_owner(db, events, thing: Thing, user_id: int) -> None:
    thing.owner_id = user_id
    thing.owner_verified = True
    record_change(db, events, "thing.claimed", thing)


def take_thing(db, events, user_id: int, thing_id: int) -> Thing:
    """``user_id``'s page check of the thing passed: they are its verified owner now. The row is
    locked and the rules checked again: of two claims that both passed, the first one wins."""
    thing = live_thing(db, thing_id, lock=True)
    check_claimable(db, thing, user_id)
    _make_verified_owner(db, events, thing, user_id)
    return thing


def take_host(db, events, user_id: int, host: str, method: str) -> int:
    """``user_id``'s host check passed: they hold ``host``, and are the verified owner of every
    live thing there that had no verified owner (theirs, unclaimed, or someone else's
    unverified). Returns how many things that verified."""
    inserted = db.execute(
        insert(VerifiedHost).values(host=host, user_id=user_id, method=method).on_conflict_do_nothing().returning(VerifiedHost.host)
    ).scalar()
    if inserted is None and hosts.holder(db, host) != user_id:
        raise Forbidden("this host is verified by another user")
    things = db.scalars(
        select(Thing)
        .where(Thing.host == host, Thing.deleted_at.is_(None), or_(Thing.owner_id.is_(None), Thing.owner_verified.is_(False)))
        .order_by(Thing.id)  # rows locked in key order: no deadlock with another batch
        .with_for_update()
    ).all()
    for thing in things:
        _make_verified_owner(db, events, thing, user_id)
    return len(things)
