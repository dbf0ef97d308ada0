"""Operator endpoints under ``/admin``: ``Authorization: Bearer $FLATTR_ADMIN_TOKEN``."""
from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify

from services.common.errors import NotFound, UserNotFound
from services.gateway import rpc
from services.gateway import params
from services.gateway.auth import bearer_token
from services.gateway.errors import ApiError
from services.gateway.views.money import period_id

admin = Blueprint("admin", __name__, url_prefix="/admin")

# Who acts through these endpoints, as the audit records name them: the holder of the one admin
# credential, FLATTR_ADMIN_TOKEN. Never taken from the request.
ADMIN_ACTOR = "admin"


@admin.before_request
def _operators_only():
    expected = current_app.config["FLATTR_ADMIN_TOKEN"]  # checked at start-up (services.gateway.config)
    if not expected:
        raise ApiError(403, "forbidden", "the admin endpoints are disabled: FLATTR_ADMIN_TOKEN is not set")
    given = bearer_token() or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "admin endpoints need the admin token", {"WWW-Authenticate": "Bearer"})


@admin.get("/ledger/check")
def ledger_check():
    result = rpc.call("settlement", "ledger_check")
    return jsonify(result), 200 if result["ok"] else 500


@admin.post("/adjustments")
def adjust():
    """Credit (or, with a negative amount, debit) a user's wallet or revenue, with a reason. The
    idempotency key names the adjustment among the user's: the same key again answers the same
    adjustment (200), or 409 if the account, amount or reason differ. An ``actor`` in the body is
    ignored: the audit record names the admin credential's holder."""
    data = params.body()
    username = params.text(data.get("username"), "username", required=True)
    account = params.text(data.get("account"), "account", required=True)
    amount = params.integer(data.get("amount"), "amount")
    reason = params.text(data.get("reason"), "reason", required=True)
    key = params.text(data.get("idempotency_key"), "idempotency_key", required=True)
    try:
        user = rpc.call("accounts", "get_user", username=username)
    except UserNotFound:
        raise ApiError(404, "not_found", "no such user") from None
    result = rpc.call("settlement", "adjust", account, user["id"], amount, reason, ADMIN_ACTOR, key)
    return jsonify(result), 201 if result["created"] else 200


@admin.get("/periods")
def list_periods():
    """The clicks service's periods, with the settlement's progress: a sealed period reads
    ``settling`` or ``settled`` once its settlement has begun or finished."""
    found = rpc.call("clicks", "list_periods")
    sealed = [p["id"] for p in found if p["state"] == "sealed"]
    settlements = {}
    for start in range(0, len(sealed), 1000):  # the RPC takes up to 1000 periods at a time
        settlements.update(rpc.call("settlement", "settlement_states", sealed[start : start + 1000]))
    for period in found:
        settlement = settlements.get(period["id"])
        period["settlement"] = settlement or ("pending" if period["state"] == "sealed" else None)
        if settlement in ("settling", "settled"):
            period["state"] = settlement
    return jsonify(found)


@admin.get("/settlements/<period>")
def settlement(period):
    """A period's settlement: ``pending``, ``settling``, ``settled`` or ``failed`` (with the reason)."""
    period = period_id(period)
    try:
        return jsonify(rpc.call("settlement", "settlement", period))
    except NotFound:
        pass
    sealed = next((p for p in rpc.call("clicks", "list_periods") if p["id"] == period and p["state"] == "sealed"), None)
    if sealed is None:
        raise ApiError(404, "not_found", "no sealed period with this id")
    # sealed, and its period.sealed event is on its way to the batch runner
    return jsonify({"period": period, "state": "pending", "totals": {"clicks": sealed["clicks"], "clicks_moved": 0}})


@admin.post("/escrow/refunds")
def refund_escrow():
    """Refund escrow held longer than ``older_than_days`` (default: the hold period) to the readers now."""
    data = params.body()
    days = data.get("older_than_days")
    result = rpc.call("settlement", "refund_stale_escrow", None if days is None else params.integer(days, "older_than_days", minimum=0, maximum=100000))
    return jsonify(result)


@admin.post("/periods/close")
def close_period():
    closed = rpc.call("clicks", "close_period")
    if closed is None:
        raise ApiError(409, "conflict", "the period was closed by someone else at the same moment; try again")
    return jsonify(closed)
