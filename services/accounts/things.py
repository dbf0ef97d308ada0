"""The things catalog: registering, reading, changing and deleting things, and finding the thing
for a URL (the flattr-by-URL and auto-submit paths). Every change is told to the other services
through the outbox (``thing.created|updated|deleted``)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.accounts import hosts, rules
from services.accounts.models import Thing, User
from services.common.errors import Conflict, Forbidden, InvalidParameters, NotFound
from services.common.paging import offset, page_and_count
from services.common.things import title_from_url
from services.common.times import unix


def catalog() -> dict:
    return {
        "categories": [{"id": c, "name": n} for c, n in rules.CATEGORIES],
        "languages": [{"id": c, "text": n} for c, n in rules.LANGUAGES],
    }


def thing_dict(thing: Thing, owner: User | None) -> dict:
    return {
        "id": thing.id,
        "url": thing.url,
        "title": thing.title,
        "description": thing.description,
        "category": thing.category,
        "language": thing.language,
        "tags": list(thing.tags or []),
        "hidden": bool(thing.hidden),
        "image": thing.image,
        "created_at": unix(thing.created_at),
        "updated_at": unix(thing.updated_at),
        "owner": {"id": owner.id, "username": owner.username} if owner else None,
        "verified": bool(thing.owner_verified),
    }


def with_owners(db, things) -> list[dict]:
    owner_ids = {t.owner_id for t in things if t.owner_id}
    owners = {u.id: u for u in db.scalars(select(User).where(User.id.in_(owner_ids)))} if owner_ids else {}
    return [thing_dict(t, owners.get(t.owner_id)) for t in things]


def live_thing(db, thing_id, lock=False) -> Thing:
    query = select(Thing).where(Thing.id == thing_id, Thing.deleted_at.is_(None))
    if lock:
        query = query.with_for_update()
    thing = db.scalar(query)
    if thing is None:
        raise NotFound("no such thing")
    return thing


def record_event(db, events, event_type: str, thing: Thing) -> None:
    """``thing.created|updated|claimed|deleted`` as the other services read them (the ownership
    contract: settlement pays only a verified owner)."""
    events.record(
        db,
        event_type,
        {
            "thing_id": thing.id,
            "owner_id": thing.owner_id,
            "verified": bool(thing.owner_verified),
            "url": thing.url,
            "title": thing.title,
            "hidden": bool(thing.hidden),
        },
    )


def record_change(db, events, event_type: str, thing: Thing) -> None:
    """Stamp ``thing`` as changed and tell the other services (``event_type``), in the caller's
    transaction."""
    thing.updated_at = func.now()
    db.flush()
    record_event(db, events, event_type, thing)


def commit_change(db, events, event_type: str, thing: Thing) -> dict:
    """``record_change`` and commit; returns the thing as the RPCs answer it."""
    record_change(db, events, event_type, thing)
    db.commit()
    db.refresh(thing)
    return with_owners(db, [thing])[0]


def _live_id_at(db, url):
    return db.scalar(select(Thing.id).where(Thing.url == url, Thing.deleted_at.is_(None)))


def _insert(db, claimant, url, fields) -> Thing:
    """A new thing at ``url`` registered by ``claimant`` (None: flattred by URL); its owner and
    whether they are verified follow from the verified hosts (``hosts.owner_of_new_thing``)."""
    existing = _live_id_at(db, url)
    if existing:
        raise Conflict("a thing with this url already exists", existing_id=existing)
    owner_id, verified, host = hosts.owner_of_new_thing(db, url, claimant)
    thing = Thing(owner_id=owner_id, owner_verified=verified, host=host, url=url, **fields)
    db.add(thing)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise Conflict("a thing with this url already exists", existing_id=_live_id_at(db, url)) from None
    db.refresh(thing)
    return thing


def create_thing(db, events, owner_id, fields) -> dict:
    if not isinstance(fields, dict):
        raise InvalidParameters("fields must be an object")
    url = rules.validate_url(fields.get("url"))
    if rules.auto_submit(url):
        raise InvalidParameters("url must be the thing's own URL, not an auto-submit URL")
    thing = _insert(db, owner_id, url, rules.validate_thing_fields(fields, creating=True))
    record_event(db, events, "thing.created", thing)
    db.commit()
    return with_owners(db, [thing])[0]


def create_unclaimed_thing(db, events, url, title=None) -> dict:
    """A thing flattred by URL before its creator joined, titled from the URL: no owner, or the
    holder of its verified host."""
    url = rules.validate_url(url)
    fields = rules.validate_thing_fields({"title": title or title_from_url(url)}, creating=True)
    thing = _insert(db, None, url, fields)
    record_event(db, events, "thing.created", thing)
    db.commit()
    return with_owners(db, [thing])[0]


def get_things(db, ids) -> list[dict]:
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) > 100:
        raise InvalidParameters("up to 100 integer ids")
    things = db.scalars(select(Thing).where(Thing.id.in_(ids), Thing.deleted_at.is_(None))).all()
    by_id = {d["id"]: d for d in with_owners(db, things)}
    return [by_id[i] for i in ids if i in by_id]


def thing_owners(db, ids) -> dict:
    """``{str(thing_id): {"owner_id": int or None, "verified": bool}}`` for settlement's
    replica, deleted things included (their clicks are still paid for); unknown ids are left out."""
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or len(ids) > 1000:
        raise InvalidParameters("up to 1000 integer ids")
    rows = db.execute(select(Thing.id, Thing.owner_id, Thing.owner_verified).where(Thing.id.in_(ids))).all()
    return {str(r.id): {"owner_id": r.owner_id, "verified": bool(r.owner_verified)} for r in rows}


def _owned(db, user_id, thing_id, doing: str) -> Thing:
    thing = live_thing(db, thing_id, lock=True)
    if thing.owner_id != user_id:
        raise Forbidden(f"only the thing's owner can {doing} it")
    return thing


def update_thing(db, events, user_id, thing_id, fields) -> dict:
    if not isinstance(fields, dict):
        raise InvalidParameters("fields must be an object")
    thing = _owned(db, user_id, thing_id, "change")
    # Clients resend the read-only url with an update; the same url is fine, a new one is not.
    if "url" in fields and fields["url"] not in (None, thing.url):
        raise InvalidParameters("a thing's url cannot be changed")
    for name, value in rules.validate_thing_fields(fields, creating=False).items():
        setattr(thing, name, value)
    return commit_change(db, events, "thing.updated", thing)


def delete_thing(db, events, user_id, thing_id) -> None:
    thing = _owned(db, user_id, thing_id, "delete")
    thing.deleted_at = func.now()
    db.flush()
    record_event(db, events, "thing.deleted", thing)
    db.commit()


def user_things(db, owner_id, include_hidden, page=1, count=30) -> list[dict]:
    page, count = page_and_count(page, count)
    query = select(Thing).where(Thing.owner_id == owner_id, Thing.deleted_at.is_(None))
    if not include_hidden:
        query = query.where(Thing.hidden.is_(False))
    things = db.scalars(query.order_by(Thing.id.desc()).offset(offset(page, count)).limit(count)).all()
    return with_owners(db, things)


def lookup_url(db, url) -> int:
    """The live thing registered at ``url``; an auto-submit URL is looked up by its target URL."""
    if not isinstance(url, str) or not url:
        raise InvalidParameters("url is required")
    if not rules.is_storable(url):
        raise NotFound("no thing has this url")
    auto = rules.auto_submit(url)
    thing_id = _live_id_at(db, auto.url if auto else url)
    if thing_id is None:
        raise NotFound("no thing has this url")
    return thing_id


def thing_for_url(db, events, url) -> dict:
    """The thing to flattr for ``url``: the registered thing; for an auto-submit URL, its thing,
    created on this first flattr and owned by its ``user_id`` (unverified unless they verified
    its host); for any other http(s) URL, an unclaimed thing titled from the URL (or, on a
    verified host, its holder's). Returns ``{"id", "created"}``."""
    url = rules.validate_url(url)
    auto = rules.auto_submit(url)
    target = rules.validate_url(auto.url) if auto else url
    existing = _live_id_at(db, target)
    if existing:
        return {"id": existing, "created": False}
    if auto:
        owner = db.scalar(select(User.id).where(User.username == auto.username)) if rules.is_storable(auto.username) else None
        if owner is None:
            raise NotFound("the auto-submit URL names no user of this platform")
        fields = dict(auto.fields)
        fields.setdefault("title", title_from_url(target))
    else:
        owner = None
        fields = {"title": title_from_url(target)}
    try:
        thing = _insert(db, owner, target, rules.validate_thing_fields(fields, creating=True))
    except Conflict as exc:  # created by a concurrent first flattr
        return {"id": exc.existing_id, "created": False}
    record_event(db, events, "thing.created", thing)
    db.commit()
    return {"id": thing.id, "created": True}
