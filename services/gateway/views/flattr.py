"""Flattring, flattr lists and subscriptions (``/rest/v2``)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from services.common.errors import NotFound
from services.gateway import rpc
from services.gateway import params
from services.gateway import representations as rep
from services.gateway.auth import current_caller, require
from services.gateway.errors import ApiError
from services.gateway.rpc import ServiceUnavailable

flattr = Blueprint("flattr", __name__, url_prefix="/rest/v2")

# Flattr's answers, by the worker's status
ANSWERS = {
    "flattr_once": (403, "You have already flattred this thing this period"),
    "flattr_owner": (403, "You cannot flattr your own thing"),
    "no_means": (401, "You do not have enough means in your wallet to flattr"),
    "not_found": (404, "No such thing"),
    "invalid_request": (400, "The flattr request could not be read"),
}



def click(user_id: int, thing_id: int, source: str = "api") -> dict:
    """Send one click to the workers; the answer, or ServiceUnavailable."""
    return current_app.extensions["clicks"].flattr(user_id, thing_id, source)


def flattr_outcome(answer: dict, base: str | None = None) -> dict | ApiError:
    """Flattr's answer to a worker's: the body of a 200, or the error to answer; ServiceUnavailable
    when the click was not carried out. Shared by the view and ``services.gateway.click_fast_path``."""
    status = answer.get("status")
    if status == "ok":
        return {"message": "ok", "description": "Thing was flattred", "thing": rep.small_thing(answer["thing"], base)}
    if status in ANSWERS:
        code, description = ANSWERS[status]
        return ApiError(code, status, description)
    raise ServiceUnavailable(f"the click could not be carried out ({status})")


def flattr_response(answer: dict):
    outcome = flattr_outcome(answer)
    if isinstance(outcome, ApiError):
        raise outcome
    return jsonify(outcome)


@flattr.post("/things/<int:thing_id>/flattr")
@require("flattr")
def flattr_thing(thing_id):
    return flattr_response(click(current_caller().user_id, thing_id))


@flattr.post("/flattr", strict_slashes=False)
@require("flattr")
def flattr_url():
    data = params.body()
    url = params.text(data.get("url"), "url", required=True)
    try:
        found = rpc.call("accounts", "thing_for_url", url)
    except NotFound:
        raise ApiError(404, "not_found", "the auto-submit URL names no user of this platform") from None
    return flattr_response(click(current_caller().user_id, found["id"]))


# -- lists ------------------------------------------------------------------------------------


def _visible(thing: dict, caller) -> bool:
    """Hidden things stay out of lists, except for their owner."""
    return not thing["hidden"] or (caller is not None and (thing.get("owner") or {}).get("id") == caller.user_id)


def _flattr_list(rows: list[dict]):
    caller = current_caller()
    thing_ids = sorted({r["thing_id"] for r in rows})
    user_ids = sorted({r["user_id"] for r in rows})
    things = {t["id"]: t for t in rpc.call("accounts", "get_things", thing_ids)} if thing_ids else {}
    counts = rpc.call("clicks", "counts", thing_ids, caller.user_id if caller else None) if thing_ids else {}
    users = rpc.call("accounts", "users_by_id", user_ids) if user_ids else {}
    out = []
    for row in rows:
        thing = things.get(row["thing_id"])
        user = users.get(str(row["user_id"]))
        if thing is None or user is None or not _visible(thing, caller):
            continue  # a deleted or hidden thing, or a deleted account, leaves no entry
        if user.get("hide_flattrs") and (caller is None or caller.user_id != user["id"]):
            continue  # who keeps what they flattr private is left out, except for themself
        thing = dict(thing, **counts.get(str(row["thing_id"]), {}))
        out.append({"type": "flattr", "thing": rep.small_thing(thing), "owner": rep.small_user(user), "created_at": row["created_at"]})
    return jsonify(out)


@flattr.get("/user/flattrs", strict_slashes=False)
@require()
def my_flattrs():
    page, count = params.paging()
    return _flattr_list(rpc.call("clicks", "flattrs", user_id=current_caller().user_id, page=page, count=count))


@flattr.get("/users/<username>/flattrs", strict_slashes=False)
def user_flattrs(username):
    user = rpc.call("accounts", "get_user", username=username)
    page, count = params.paging()
    caller = current_caller()
    if user.get("hide_flattrs") and (caller is None or caller.user_id != user["id"]):
        return jsonify([])
    return _flattr_list(rpc.call("clicks", "flattrs", user_id=user["id"], page=page, count=count))


@flattr.get("/things/<int:thing_id>/flattrs", strict_slashes=False)
def thing_flattrs(thing_id):
    if not rpc.call("accounts", "get_things", [thing_id]):
        raise ApiError(404, "not_found", "no such thing")
    page, count = params.paging()
    return _flattr_list(rpc.call("clicks", "flattrs", thing_id=thing_id, page=page, count=count))


# -- subscriptions ---------------------------------------------------------------------------


def _subscription(sub: dict):
    things = rpc.call("accounts", "get_things", [sub["thing_id"]])
    counts = rpc.call("clicks", "counts", [sub["thing_id"]]) if things else {}
    thing = rep.small_thing(dict(things[0], **counts.get(str(sub["thing_id"]), {}))) if things else None
    return {"type": "subscription", "thing": thing, "months": sub["months"], "paused": sub["paused"], "created_at": sub["created_at"]}


@flattr.get("/user/subscriptions", strict_slashes=False)
@require("flattr")
def my_subscriptions():
    return jsonify([_subscription(s) for s in rpc.call("clicks", "subscriptions", current_caller().user_id)])


@flattr.post("/things/<int:thing_id>/subscriptions", strict_slashes=False)
@require("flattr")
def subscribe(thing_id):
    data = params.body()
    months = data.get("months")
    if months is not None:
        months = params.integer(months, "months")  # the lengths allowed are the clicks service's to check
    sub = rpc.call("clicks", "subscribe", current_caller().user_id, thing_id, months)
    return jsonify(_subscription(sub)), 201


@flattr.put("/things/<int:thing_id>/subscriptions", strict_slashes=False)
@require("flattr")
def toggle_subscription(thing_id):
    return jsonify(_subscription(rpc.call("clicks", "toggle_subscription", current_caller().user_id, thing_id)))


@flattr.delete("/things/<int:thing_id>/subscriptions", strict_slashes=False)
@require("flattr")
def unsubscribe(thing_id):
    rpc.call("clicks", "unsubscribe", current_caller().user_id, thing_id)
    return Response(status=204)


# -- activities ---------------------------------------------------------------------------------


def _activities(user_id: int, username: str):
    kind = request.args.get("type", "outgoing")
    if kind not in ("incoming", "outgoing"):
        raise ApiError(400, "invalid_parameters", "type is incoming or outgoing")
    caller = current_caller()
    if kind == "outgoing":
        rows = rpc.call("clicks", "flattrs", user_id=user_id, page=1, count=30)
    else:
        own = [t["id"] for t in rpc.call("accounts", "user_things", user_id, True, 1, 100)]
        rows = rpc.call("clicks", "flattrs", thing_ids=own, page=1, count=30) if own else []
    things = {t["id"]: t for t in rpc.call("accounts", "get_things", sorted({r["thing_id"] for r in rows}))} if rows else {}
    users = rpc.call("accounts", "users_by_id", sorted({r["user_id"] for r in rows})) if rows else {}
    items = []
    for row in rows:
        thing, actor = things.get(row["thing_id"]), users.get(str(row["user_id"]))
        if thing is None or actor is None or not _visible(thing, current_caller()):
            continue
        if actor.get("hide_flattrs") and (caller is None or caller.user_id != actor["id"]):
            continue
        items.append(
            {
                "published": row["created_at"],
                "verb": "like",
                "actor": {"objectType": "person", "displayName": actor["username"], "url": rep.small_user(actor)["link"]},
                "object": {"objectType": "bookmark", "displayName": thing["title"], "url": thing["url"], "id": rep.api_url(f"/things/{thing['id']}")},
            }
        )
    response = jsonify({"items": items})
    response.headers["Content-Type"] = "application/stream+json"
    return response


@flattr.get("/user/activities", strict_slashes=False)
@require()
def my_activities():
    caller = current_caller()
    return _activities(caller.user_id, caller.username)


@flattr.get("/users/<username>/activities", strict_slashes=False)
def user_activities(username):
    user = rpc.call("accounts", "get_user", username=username)
    return _activities(user["id"], user["username"])
