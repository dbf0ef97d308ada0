"""The platform's money endpoints: wallet, deposits, revenue, payouts, statements.

Personal tokens only, with the ``wallet`` scope (what a reader pays with) or the ``payout`` scope
(what a creator earned); a statement shows both sides, so either scope reads it."""
from __future__ import annotations

from flask import Blueprint, jsonify

from services.common.periods import is_period_id
from services.gateway import rpc
from services.gateway import params
from services.gateway.auth import current_caller, require
from services.gateway.errors import ApiError
from services.gateway.representations import api_url

money = Blueprint("money", __name__, url_prefix="/rest/v2")


def _idempotent_request(method: str, made: str, created_status: int):
    """A deposit or a payout request (``settlement.<method>``, answering ``{made: ..., "created"}``):
    ``amount`` and ``idempotency_key`` in; the same key again answers what the first request made
    (200) and makes nothing new."""
    data = params.body()
    amount = params.integer(data.get("amount"), "amount")
    key = params.text(data.get("idempotency_key"), "idempotency_key", required=True)
    result = rpc.call("settlement", method, current_caller().user_id, amount, key)
    return jsonify(result[made]), created_status if result["created"] else 200


@money.get("/user/wallet", strict_slashes=False)
@require("wallet", personal=True)
def wallet():
    answer = rpc.call("settlement", "wallet", current_caller().user_id)
    answer["period"] = rpc.call("clicks", "open_period")
    return jsonify(answer)


@money.post("/user/deposits", strict_slashes=False)
@require("wallet", personal=True)
def deposit():
    return _idempotent_request("deposit", "deposit", 201)


@money.get("/user/revenue", strict_slashes=False)
@require("payout", personal=True)
def revenue():
    return jsonify(rpc.call("settlement", "revenue", current_caller().user_id))


@money.post("/user/payouts", strict_slashes=False)
@require("payout", personal=True)
def request_payout():
    return _idempotent_request("request_payout", "payout", 202)


@money.get("/user/payouts", strict_slashes=False)
@require("payout", personal=True)
def payouts():
    return jsonify(rpc.call("settlement", "payouts", current_caller().user_id))


@money.get("/user/payouts/<int:payout_id>")
@require("payout", personal=True)
def payout(payout_id):
    return jsonify(rpc.call("settlement", "payout", current_caller().user_id, payout_id))


def period_id(value: str) -> str:
    """A period id from a URL (``2026-11``, ``2026-11.2``); anything else names no period."""
    if not is_period_id(value):
        raise ApiError(404, "not_found", "no such period")
    return value


@money.get("/user/statements/<period>")
@require(personal=True, any_of=("wallet", "payout"))
def statement(period):
    """Where the caller's money went in a settled period, per thing with the fee, and what the
    caller's things earned in it; the figures are the ledger's, to the cent."""
    found = rpc.call("settlement", "statement", current_caller().user_id, period_id(period))
    for line in found["spent"] + found["earned"]["things"]:
        line["thing"] = {"id": line["thing_id"], "resource": api_url(f"/things/{line['thing_id']}")}
    return jsonify(found)
