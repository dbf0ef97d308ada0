"""The platform's money endpoints: wallet, deposits, revenue, payouts, statements. Personal tokens only."""
from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify

from services.gateway import params
from services.gateway.auth import current_caller, require
from services.gateway.errors import ApiError
from services.gateway.representations import api_url

money = Blueprint("money", __name__, url_prefix="/rest/v2")


def rpc(method: str, *args):
    return current_app.extensions["rpc"].call("settlement", method, *args)


def _amount_and_key() -> tuple[int, str]:
    data = params.body()
    amount = params.integer(data.get("amount"), "amount")
    key = params.text(data.get("idempotency_key"), "idempotency_key", required=True)
    return amount, key


@money.get("/user/wallet", strict_slashes=False)
@require(personal=True)
def wallet():
    answer = rpc("wallet", current_caller().user_id)
    answer["period"] = current_app.extensions["rpc"].call("clicks", "open_period")
    return jsonify(answer)


@money.post("/user/deposits", strict_slashes=False)
@require(personal=True)
def deposit():
    amount, key = _amount_and_key()
    result = rpc("deposit", current_caller().user_id, amount, key)
    return jsonify(result["deposit"]), 201 if result["created"] else 200


@money.get("/user/revenue", strict_slashes=False)
@require(personal=True)
def revenue():
    return jsonify(rpc("revenue", current_caller().user_id))


@money.post("/user/payouts", strict_slashes=False)
@require(personal=True)
def request_payout():
    amount, key = _amount_and_key()
    result = rpc("request_payout", current_caller().user_id, amount, key)
    return jsonify(result["payout"]), 202 if result["created"] else 200


@money.get("/user/payouts", strict_slashes=False)
@require(personal=True)
def payouts():
    return jsonify(rpc("payouts", current_caller().user_id))


@money.get("/user/payouts/<int:payout_id>")
@require(personal=True)
def payout(payout_id):
    return jsonify(rpc("payout", current_caller().user_id, payout_id))


PERIOD_ID = re.compile(r"[0-9]{4}-[0-9]{2}(\.[0-9]{1,8})?")


def period_id(value: str) -> str:
    """A period id from a URL (``2026-11``, ``2026-11.2``); anything else names no period."""
    if not PERIOD_ID.fullmatch(value):
        raise ApiError(404, "not_found", "no such period")
    return value


@money.get("/user/statements/<period>")
@require(personal=True)
def statement(period):
    """Where the caller's money went in a settled period, per thing with the fee, and what the
    caller's things earned in it; the figures are the ledger's, to the cent."""
    found = rpc("statement", current_caller().user_id, period_id(period))
    for line in found["spent"] + found["earned"]["things"]:
        line["thing"] = {"id": line["thing_id"], "resource": api_url(f"/things/{line['thing_id']}")}
    return jsonify(found)
