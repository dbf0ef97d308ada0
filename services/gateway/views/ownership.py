"""Ownership over the API: claiming a thing by its page, and verifying hosts.

A check fetches someone's page, which may take seconds, so accounts runs it on a pool of its own
and the RPC that asks for one answers at once (``pending``). The view then waits for the outcome
with short RPCs spaced out (50 ms doubling to 0.25 s), holding no RPC connection in between, for
up to ``CLAIM_ANSWER_SECONDS`` (and never past the request's deadline): a quick page is answered
as before (200, or 403 with the reason), a slow one with 202 and the check, whose ``Location``
the client polls.
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify

from services.common import settings
from services.common.errors import RateLimited
from services.gateway import deadline, params
from services.gateway import representations as rep
from services.gateway import rpc
from services.gateway.auth import current_caller, require
from services.gateway.errors import ApiError
from services.gateway.rpc import ServiceUnavailable
from services.gateway.views.api import with_counts

ownership = Blueprint("ownership", __name__, url_prefix="/rest/v2")

OPEN = ("pending", "running")
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 0.25
RETRY_AFTER = "60"


def _ask(method: str, *args):
    """An accounts RPC that may refuse for the caller's limits: 403 ``rate_limit_exceeded`` with Retry-After."""
    try:
        return rpc.call("accounts", method, *args)
    except RateLimited as exc:
        raise ApiError(403, "rate_limit_exceeded", exc.description, {"Retry-After": RETRY_AFTER}) from None


def outcome(check: dict, user_id: int) -> dict:
    """The check once it is done, or as it is when the wait is over."""
    seconds = float(current_app.config.get("CLAIM_ANSWER_SECONDS") or settings.get_float("CLAIM_ANSWER_SECONDS"))
    ends = time.monotonic() + min(seconds, deadline.remaining(seconds))
    pause = FIRST_PAUSE
    while check["state"] in OPEN and time.monotonic() + pause < ends:
        time.sleep(pause)
        pause = min(2 * pause, LONGEST_PAUSE)
        check = rpc.call("accounts", "get_verification", user_id, check["id"])
    return check


def _pending(check: dict, location: str, what: str):
    response = jsonify({"message": "pending", "description": f"{what} is being checked; ask {location} for the outcome", "check": rep.check(check)})
    response.status_code = 202
    response.headers["Location"] = location
    response.headers["Retry-After"] = "1"
    return response


def _refused(check: dict):
    raise ApiError(403, "forbidden", check["reason"] or "the check failed")


# -- things ------------------------------------------------------------------------------------


@ownership.post("/things/<int:thing_id>/claim")
@require("thing")
def claim_thing(thing_id):
    """Claim a thing that has no verified owner (or verify one's own): accounts checks its page
    for the caller's mark. No body is read."""
    caller = current_caller()
    check = outcome(_ask("request_claim", caller.user_id, thing_id), caller.user_id)
    if check["state"] in OPEN:
        return _pending(check, rep.api_url(f"/things/{thing_id}/claim"), "the thing's page")
    if check["state"] == "failed":
        _refused(check)
    claimed = rpc.call("accounts", "get_things", [thing_id])
    if not claimed:
        raise ApiError(404, "not_found", "no such thing")
    try:
        claimed = with_counts(claimed, caller)
    except ServiceUnavailable:
        pass  # the claim is committed: answer it, without the counts, rather than a 503 that reads as "not done"
    return jsonify({"message": "ok", "description": "Thing was claimed successfully", "thing": rep.thing(claimed[0], caller)})


@ownership.get("/things/<int:thing_id>/claim")
@require("thing")
def claim_status(thing_id):
    """The caller's latest claim of the thing: pending, passed or failed (with the reason)."""
    return jsonify(rep.check(rpc.call("accounts", "claim_status", current_caller().user_id, thing_id)))


# -- hosts -------------------------------------------------------------------------------------


@ownership.post("/user/hosts", strict_slashes=False)
@require("thing")
def verify_host():
    caller = current_caller()
    host = params.text(params.body().get("host"), "host", required=True)
    check = outcome(_ask("request_host", caller.user_id, host), caller.user_id)
    if check["state"] in OPEN:
        return _pending(check, rep.api_url(f"/user/hosts/{check['target']}"), "the host")
    if check["state"] == "failed":
        _refused(check)
    return jsonify(rep.host(rpc.call("accounts", "host_status", caller.user_id, check["target"])))


@ownership.get("/user/hosts", strict_slashes=False)
@require("thing")
def list_hosts():
    hosts = rpc.call("accounts", "list_hosts", current_caller().user_id)
    return jsonify([rep.host(dict(h, verified=True, check=None)) for h in hosts])


@ownership.get("/user/hosts/<host>")
@require("thing")
def host_status(host):
    """Whether the caller holds the host, with their latest check of it (to poll a pending one)."""
    return jsonify(rep.host(rpc.call("accounts", "host_status", current_caller().user_id, host)))


@ownership.delete("/user/hosts/<host>")
@require("thing")
def give_up_host(host):
    rpc.call("accounts", "give_up_host", current_caller().user_id, host)
    return Response(status=204)
