"""The Flattr REST API v2 (``/rest/v2``) and the platform's account endpoints."""
from __future__ import annotations

import json
import re
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from services.common.errors import Conflict, NotFound
from services.gateway import rpc
from services.gateway import params, representations as rep
from services.gateway.auth import current_caller, password_required, require
from services.gateway.errors import ApiError

api = Blueprint("api", __name__, url_prefix="/rest/v2")

THING_FIELDS = ("url", "title", "description", "category", "language", "tags", "hidden", "image")
MAX_IDS = 100



def _thing_fields(data: dict) -> dict:
    fields = {}
    for name in THING_FIELDS:
        if name not in data:
            continue
        value = data[name]
        if name == "hidden":
            fields[name] = params.boolean(value, name)
        elif name == "tags" and isinstance(value, list):
            fields[name] = [params.text(v, "tags") for v in value]
        else:
            fields[name] = params.text(value, name)
    return fields


def with_counts(things: list[dict], caller) -> list[dict]:
    """Things from accounts with their click counts (and, for a caller, ``flattred``) from clicks."""
    if not things:
        return []
    counts = rpc.call("clicks", "counts", [t["id"] for t in things], caller.user_id if caller else None)
    return [dict(t, **counts.get(str(t["id"]), {})) for t in things]


def _parse_ids(ids: str) -> list[int]:
    parts = [p for p in ids.split(",") if p.strip()]
    if not parts or len(parts) > MAX_IDS or not all(re.fullmatch(r"[0-9]{1,18}", p.strip()) for p in parts):
        raise ApiError(400, "invalid_parameters", f"ids are 1 to {MAX_IDS} comma-separated integers")
    return [int(p) for p in parts]


@api.get("")
def hello_world():
    """The API's root, as Flattr's answered it: old clients (gPodder) check that the API is
    reachable by ``"message": "hello_world"`` on the first line of the body."""
    body = {
        "message": "hello_world",
        "description": "Flattr's REST API v2 on a self-hosted platform",
        "documentation": f"{rep.base_url()}/openapi.json",
    }
    return Response(json.dumps(body) + "\n", 200, {"Content-Type": "application/json"})


# -- things ------------------------------------------------------------------------------


@api.get("/things/<ids>")
def get_things(ids):
    caller = current_caller()
    wanted = _parse_ids(ids)
    things = with_counts(rpc.call("accounts", "get_things", wanted), caller)
    if "," not in ids:
        if not things:
            raise ApiError(404, "not_found", "no such thing")
        return jsonify(rep.thing(things[0], caller))
    return jsonify([rep.thing(t, caller) for t in things])


@api.get("/things/lookup", strict_slashes=False)
def lookup_thing():
    url = params.text(request.args.get("url"), "url")
    if not url:
        raise ApiError(400, "invalid_parameters", "url is required")
    try:
        thing_id = rpc.call("accounts", "lookup_url", url)
    except NotFound:
        return jsonify({"message": "not_found", "description": "no thing has this url"}), 404
    location = rep.api_url(f"/things/{thing_id}")
    response = jsonify({"message": "found", "location": location})
    response.status_code = 302
    response.headers["Location"] = location
    return response


@api.get("/things/search", strict_slashes=False)
def search_things():
    caller = current_caller()
    page, count = params.paging()
    query = {"page": page, "count": count}
    for name in ("query", "url", "tags", "language", "category", "user", "sort"):
        value = params.text(request.args.get(name), name)
        if value:
            query[name] = value
    result = rpc.call("accounts", "search_things", query, caller.user_id if caller else None)
    things = [rep.thing(t, caller) for t in with_counts(result["things"], caller)]
    return jsonify({"total_items": result["total_items"], "items": len(things), "page": result["page"], "things": things})


@api.post("/things", strict_slashes=False)
@require("thing")
def create_thing():
    caller = current_caller()
    fields = _thing_fields(params.body())
    if not fields.get("url"):
        raise ApiError(400, "invalid_parameters", "url is required")
    fields.setdefault("title", None)
    try:
        created = rpc.call("accounts", "create_thing", caller.user_id, fields)
    except Conflict as exc:
        location = rep.api_url(f"/things/{exc.existing_id}")
        raise ApiError(409, "conflict", "a thing with this url already exists", {"Location": location}, {"location": location}) from None
    body = {
        "id": created["id"],
        "link": rep.api_url(f"/things/{created['id']}"),
        "message": "ok",
        "description": "Thing was created successfully",
        "verified": created["verified"],
    }
    return jsonify(body), 201


def _update_thing(thing_id: int):
    caller = current_caller()
    data = params.body()
    data.pop("_method", None)
    rpc.call("accounts", "update_thing", caller.user_id, thing_id, _thing_fields(data))
    return jsonify({"message": "ok", "description": "Thing was updated successfully"})


@api.patch("/things/<int:thing_id>")
@require("thing")
def patch_thing(thing_id):
    return _update_thing(thing_id)


@api.post("/things/<int:thing_id>")
@require("thing")
def post_thing(thing_id):
    # Flattr clients that cannot send PATCH post with _method=patch
    method = request.form.get("_method") or request.args.get("_method") or params.body().get("_method")
    if not isinstance(method, str) or method.lower() != "patch":
        raise ApiError(405, "method_not_allowed", "POST to a thing needs _method=patch")
    return _update_thing(thing_id)


@api.delete("/things/<int:thing_id>")
@require("thing")
def delete_thing(thing_id):
    rpc.call("accounts", "delete_thing", current_caller().user_id, thing_id)
    return Response(status=204)


@api.get("/users/<username>/things", strict_slashes=False)
def user_things(username):
    caller = current_caller()
    owner = rpc.call("accounts", "get_user", username=username)
    page, count = params.paging()
    own = caller is not None and caller.user_id == owner["id"] and "extendedread" in caller.scopes
    things = rpc.call("accounts", "user_things", owner["id"], own, page, count)
    return jsonify([rep.thing(t, caller) for t in with_counts(things, caller)])


@api.get("/user/things", strict_slashes=False)
@require()
def my_things():
    caller = current_caller()
    page, count = params.paging()
    things = rpc.call("accounts", "user_things", caller.user_id, "extendedread" in caller.scopes, page, count)
    return jsonify([rep.thing(t, caller) for t in with_counts(things, caller)])


# -- users -------------------------------------------------------------------------------


@api.get("/users/<username>")
def get_user(username):
    return jsonify(rep.user(rpc.call("accounts", "get_user", username=username)))


@api.get("/user", strict_slashes=False)
@require()
def me():
    caller = current_caller()
    data = rpc.call("accounts", "get_user", user_id=caller.user_id)
    private = bool({"extendedread", "email"} & caller.scopes)
    out = rep.user(data, private=private)
    if private and "extendedread" not in caller.scopes:
        out.pop("registered_at")
    return jsonify(out)


@api.post("/users", strict_slashes=False)
def sign_up():
    data = params.body()
    username = params.text(data.get("username"), "username", required=True)
    email = params.text(data.get("email"), "email", required=True)
    password = params.text(data.get("password"), "password", required=True)
    profile = {k: params.text(data.get(k), k) for k in ("firstname", "lastname", "about", "city", "country") if data.get(k) is not None}
    created = rpc.call("accounts", "register_user", username, email, password, profile)
    response = jsonify(rep.user(created, private=True))
    response.status_code = 201
    response.headers["Location"] = rep.api_url(f"/users/{created['username']}")
    return response


@api.post("/user/tokens", strict_slashes=False)
@password_required
def create_token():
    data = params.body()
    scope = params.text(data.get("scope"), "scope") or ""
    name = params.text(data.get("name"), "name") or ""  # its length is accounts' to check
    token = rpc.call("accounts", "create_personal_token", g.password_user["id"], scope, name)
    return jsonify(token), 201


@api.get("/user/tokens", strict_slashes=False)
@password_required
def list_tokens():
    return jsonify(rpc.call("accounts", "list_tokens", g.password_user["id"]))


@api.delete("/user/tokens/<int:token_id>")
@password_required
def revoke_token(token_id):
    rpc.call("accounts", "revoke_token", g.password_user["id"], token_id)
    return Response(status=204)


@api.put("/user/budget", strict_slashes=False)
@require("wallet", personal=True)
def set_budget():
    data = params.body()
    amount = params.integer(data.get("amount"), "amount")
    budget = rpc.call("accounts", "set_budget", current_caller().user_id, amount)
    return jsonify(budget)


@api.get("/user/budget", strict_slashes=False)
@require("wallet", personal=True)
def get_budget():
    return jsonify(rpc.call("accounts", "get_budget", current_caller().user_id))


# -- reference lists and limits ---------------------------------------------------------------


def catalog() -> dict:
    """Categories and languages are fixed lists owned by accounts; asked for once per process."""
    found = current_app.extensions.get("catalog")
    if found is None:
        found = current_app.extensions["catalog"] = rpc.call("accounts", "catalog")
    return found


@api.get("/categories", strict_slashes=False)
def categories():
    return jsonify(catalog()["categories"])


@api.get("/languages", strict_slashes=False)
def languages():
    return jsonify(catalog()["languages"])


@api.get("/rate_limit", strict_slashes=False)
def rate_limit():
    limiter = current_app.extensions["rate_limiter"]
    current = limiter.current_limit if limiter.enabled else None
    now = int(time.time())
    if current is None:
        return jsonify({"hourly_limit": None, "remaining_hits": None, "current_time": now, "enabled": False})
    return jsonify(
        {
            "hourly_limit": current.limit.amount,
            "remaining_hits": current.remaining,
            "current_time": now,
            "reset_time_in_seconds": max(0, int(current.reset_at) - now),
            "enabled": True,
        }
    )
