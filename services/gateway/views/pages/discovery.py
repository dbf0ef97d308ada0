"""Finding things: the home page (trending things; for a signed-in reader, this period at a
glance), /discover (category, tag, language, search, the API's sorts), thing pages (the button,
count, description, tags, owner, recent flattrers; flattr, subscribe and claim) and profiles."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from services.common.errors import DomainError, NotFound, UserNotFound
from services.common.paging import MAX_ID
from services.gateway import rpc
from services.gateway.views.api import catalog
from services.gateway.views.pages import charts
from services.gateway.views.pages.common import check_and_say, me, signed_in, things_by_id, with_counts
from services.gateway.views.pages.reader import period_overview
from services.gateway.views.web import login_required, web

SORTS = (
    ("trend", "Trending"),
    ("flattrs_week", "Most flattred this week"),
    ("flattrs_month", "Most flattred this month"),
    ("flattrs", "Most flattred ever"),
    ("relevance", "Newest (or best match)"),
)
PAGE_SIZE = 24
# what the reader sees after a flattr from a platform page, by the click's answer
FLATTR_MESSAGES = {
    "ok": ("ok", "Flattred! It gets a share of your budget when the period closes."),
    "flattr_once": ("error", "You have flattred this thing this period already."),
    "flattr_owner": ("error", "This is your own thing: you cannot flattr it."),
    "no_means": ("error", "Not enough means: set a monthly budget and fund your wallet with at least that much."),
    "not_found": ("error", "This thing does not exist any more."),
}


def search(params: dict) -> dict:
    viewer = me() if signed_in() else None
    found = rpc.call("accounts", "search_things", params, viewer)
    found["things"] = with_counts(found["things"], viewer)
    return found


@web.get("/")
def home():
    trending = search({"sort": "trend", "count": 12})["things"]
    summary = None
    if signed_in():
        summary = period_overview(me())
    return render_template("pages/home.html", trending=trending, summary=summary)


@web.get("/discover")
def discover():
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 1000 else 1
    chosen = {name: request.args.get(name, "").strip() for name in ("query", "category", "language", "tag", "sort")}
    if chosen["sort"] not in dict(SORTS):
        chosen["sort"] = "trend"
    params = {"page": page, "count": PAGE_SIZE, "sort": chosen["sort"]}
    for name in ("query", "category", "language"):
        if chosen[name]:
            params[name] = chosen[name]
    if chosen["tag"]:
        params["tags"] = chosen["tag"]
    found = search(params)
    return render_template(
        "pages/discover.html", found=found, chosen=chosen, sorts=SORTS, page=page,
        has_next=page * PAGE_SIZE < found["total_items"], catalog=catalog(),
    )


def _thing(thing_id: int) -> dict:
    things = rpc.call("accounts", "get_things", [thing_id]) if thing_id <= MAX_ID else []
    if not things:
        raise NotFound("no such thing")
    return with_counts(things, me() if signed_in() else None)[0]


def recent_flattrers(thing_id: int, limit: int = 10) -> list[dict]:
    """Who flattred the thing lately, leaving out those who hide what they flattr."""
    rows = rpc.call("clicks", "flattrs", thing_id=thing_id, page=1, count=50)
    users = rpc.call("accounts", "users_by_id", sorted({r["user_id"] for r in rows})) if rows else {}
    shown = []
    for row in rows:
        user = users.get(str(row["user_id"]))
        if user is not None and not user.get("hide_flattrs"):
            shown.append({"username": user["username"], "created_at": row["created_at"]})
        if len(shown) == limit:
            break
    return shown


@web.get("/thing/<int:thing_id>")
def thing_page(thing_id):
    thing = _thing(thing_id)
    owner = thing.get("owner")
    own = signed_in() and owner is not None and owner["id"] == me()
    escrow = None
    if owner is None or not thing.get("verified", True):
        escrow = rpc.call("settlement", "escrow_of_things", [thing_id]).get(str(thing_id))
    subscription = None
    if signed_in() and not own:
        subscription = next((s for s in rpc.call("clicks", "subscriptions", me()) if s["thing_id"] == thing_id), None)
    names = catalog()
    return render_template(
        "pages/thing.html", thing=thing, own=own, escrow=escrow, subscription=subscription,
        flattrers=recent_flattrers(thing_id), signed_in=signed_in(),
        category={c["id"]: c["name"] for c in names["categories"]}.get(thing["category"], thing["category"]),
        language={c["id"]: c["text"] for c in names["languages"]}.get(thing["language"], thing["language"]),
    )


@web.post("/thing/<int:thing_id>/flattr")
@login_required
def thing_flattr(thing_id):
    """A signed-in visitor on the platform's own page flattrs in one click (CSRF-checked form)."""
    answer = current_app.extensions["clicks"].flattr(me(), thing_id, "button") if thing_id <= MAX_ID else {"status": "not_found"}
    current_app.extensions["button_cache"].invalidate(thing_id)
    category, text = FLATTR_MESSAGES.get(answer.get("status"), ("error", "The flattr could not be made; try again."))
    flash(text, category)
    if answer.get("status") == "no_means":
        return redirect(url_for("web.wallet"))
    return redirect(url_for("web.thing_page", thing_id=thing_id))


@web.post("/thing/<int:thing_id>/subscription")
@login_required
def thing_subscribe(thing_id):
    months = request.form.get("months", "")
    try:
        rpc.call("clicks", "subscribe", me(), thing_id, int(months) if months.isdigit() else None)
        flash("Subscribed: this thing is flattred at the start of every period.", "ok")
    except DomainError as exc:
        flash(exc.description, "error")
    return redirect(url_for("web.thing_page", thing_id=thing_id))


@web.post("/thing/<int:thing_id>/claim")
@login_required
def thing_claim(thing_id):
    """"Check now": accounts fetches the thing's page (on its own pool) and looks for the owner
    mark naming the user; the page waits for the outcome as the API does."""
    check_and_say("request_claim", thing_id,
                  "Checked: the page names you, so this thing is yours. Its escrow is on its way to your revenue.", "the page")
    return redirect(url_for("web.thing_page", thing_id=thing_id))


@web.get("/profile/<username>")
def profile(username):
    try:
        user = rpc.call("accounts", "get_user", username=username)
    except UserNotFound:
        raise NotFound("no such user") from None
    own = signed_in() and me() == user["id"]
    viewer = me() if signed_in() else None
    things = with_counts(rpc.call("accounts", "user_things", user["id"], own, 1, 30), viewer)
    flattrs = None
    if own or not user.get("hide_flattrs"):
        rows = rpc.call("clicks", "flattrs", user_id=user["id"], page=1, count=30)
        known = things_by_id(r["thing_id"] for r in rows)
        flattrs = [
            {"thing": known[r["thing_id"]], "created_at": r["created_at"]}
            for r in rows
            if r["thing_id"] in known and (not known[r["thing_id"]]["hidden"] or own)
        ]
    earnings = None
    if own or not user.get("hide_earnings"):
        periods = rpc.call("settlement", "revenue", user["id"])["periods"]
        earnings = charts.bar_chart("Revenue per period", [(p["period"], p["amount"]) for p in reversed(periods)])
    return render_template("pages/profile.html", user=user, own=own, things=things, flattrs=flattrs, earnings=earnings)
