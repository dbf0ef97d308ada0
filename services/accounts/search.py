"""The things search (``GET /rest/v2/things/search``): text, tags, language, category, owner, sorts."""
from __future__ import annotations

from sqlalchemy import and_, func, not_, or_, select, text

from services.accounts import rules
from services.accounts.models import Thing, User
from services.accounts.things import with_owners
from services.common.errors import InvalidParameters
from services.common.paging import offset, page_and_count

SORTS = ("trend", "flattrs", "flattrs_month", "flattrs_week", "flattrs_day", "relevance")


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _tags_clause(value: str):
    clauses = []
    for required, excluded in rules.parse_tag_query(value).groups:
        parts = []
        if required:
            parts.append(Thing.tags.contains(list(required)))
        if excluded:
            parts.append(not_(Thing.tags.overlap(list(excluded))))
        clauses.append(and_(*parts))
    return or_(*clauses)


def search_things(db, params, viewer_id=None) -> dict:
    if not isinstance(params, dict):
        raise InvalidParameters("params must be an object")
    page, count = page_and_count(params.get("page"), params.get("count"))
    visible = Thing.hidden.is_(False)
    if viewer_id is not None:
        visible = or_(visible, Thing.owner_id == viewer_id)
    query = select(Thing).where(Thing.deleted_at.is_(None), visible)
    text_query = params.get("query")
    if text_query:
        pattern = _like(text_query)
        query = query.where(or_(Thing.title.ilike(pattern), Thing.description.ilike(pattern), Thing.url.ilike(pattern)))
    if params.get("url"):
        query = query.where(Thing.url == params["url"])
    if params.get("tags"):
        query = query.where(_tags_clause(params["tags"]))
    for name, allowed in (("language", rules.LANGUAGE_IDS), ("category", rules.CATEGORY_IDS)):
        if params.get(name):
            values = [v for v in str(params[name]).split(",") if v]
            if any(v not in allowed for v in values):
                raise InvalidParameters(f"unknown {name}")
            query = query.where(getattr(Thing, name).in_(values))
    if params.get("user"):
        owner = db.scalar(select(User.id).where(User.username == params["user"])) if rules.is_storable(params["user"]) else None
        # an unknown user owns nothing (and never matches the unclaimed things)
        query = query.where(Thing.owner_id == owner) if owner is not None else query.where(False)
    sort = params.get("sort") or "relevance"
    if sort not in SORTS:
        raise InvalidParameters("unknown sort")
    total = db.scalar(select(func.count()).select_from(query.subquery()))
    if sort == "relevance" and text_query:
        # title matches first, then the newest
        order = [Thing.title.ilike(pattern).desc(), Thing.id.desc()]
    elif sort == "relevance":
        order = [Thing.id.desc()]
    elif sort == "flattrs":
        order = [Thing.flattrs.desc(), Thing.id.desc()]
    else:
        score = rules.popularity(sort)
        order = [text(f"coalesce((SELECT {score} FROM accounts.thing_daily_counts c WHERE c.thing_id = things.id), 0) DESC"), Thing.id.desc()]
    things = db.scalars(query.order_by(*order).offset(offset(page, count)).limit(count)).all()
    return {"total_items": total, "page": page, "things": with_owners(db, things)}
