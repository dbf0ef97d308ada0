"""Money requests that must be refused, and write nothing for the one who asked: bad deposits,
refused payments, payouts outside the limits, bad adjustments. Each test looks only at its own
user's rows, so they all run on one platform."""
import pytest
import requests
from sqlalchemy import text

from tests.factories import ADMIN, credit_revenue, deposit, ledger_check, user_with_token
from tests.shared_platform import db, gateway, rpc  # noqa: F401 - one platform for the module


def wallet(base, headers):
    response = requests.get(f"{base}/rest/v2/user/wallet", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def rows_of(db, rpc, username: str) -> dict:
    """What settlement holds for one user: deposits, payouts, adjustments and ledger postings."""
    user_id = rpc.accounts.get_user(username=username)["id"]
    with db.connect() as conn:
        def count(sql):
            return conn.execute(text(sql), {"u": user_id}).scalar()
        return {
            "deposits": count("SELECT count(*) FROM settlement.deposits WHERE user_id = :u"),
            "payouts": count("SELECT count(*) FROM settlement.payouts WHERE user_id = :u"),
            "adjustments": count("SELECT count(*) FROM settlement.adjustments WHERE owner_id = :u"),
            "postings": count("SELECT count(*) FROM settlement.postings p JOIN settlement.ledger_accounts a ON a.id = p.account_id "
                              "WHERE a.owner_id = :u"),
        }


NOTHING = {"deposits": 0, "payouts": 0, "adjustments": 0, "postings": 0}


@pytest.mark.parametrize("amount, status, code", [(513, 402, "payment_declined"), (1066, 502, "provider_error")])
def test_refused_deposits_write_nothing(gateway, db, rpc, amount, status, code):
    user, headers = user_with_token(gateway)
    answer = deposit(gateway, headers, amount)
    assert answer.status_code == status
    assert answer.json()["error"] == code
    assert wallet(gateway, headers)["balance"] == 0
    assert rows_of(db, rpc, user["username"]) == NOTHING
    ledger_check(gateway)


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0, "idempotency_key": "k"},
        {"amount": -100, "idempotency_key": "k"},
        {"amount": 12.5, "idempotency_key": "k"},
        {"amount": "lots", "idempotency_key": "k"},
        {"amount": 1000001, "idempotency_key": "k"},
        {"amount": 10**30, "idempotency_key": "k"},
        {"amount": 100},
        {"idempotency_key": "k"},
        {"amount": 100, "idempotency_key": ""},
        {"amount": 100, "idempotency_key": "x" * 101},
        {"amount": True, "idempotency_key": "k"},
    ],
)
def test_bad_deposits_are_4xx_and_write_nothing(gateway, db, rpc, body):
    user, headers = user_with_token(gateway)
    answer = requests.post(f"{gateway}/rest/v2/user/deposits", json=body, headers=headers)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"] in ("invalid_parameters", "invalid_request")
    assert rows_of(db, rpc, user["username"]) == NOTHING


@pytest.mark.parametrize("amount", [999, 6001, 0, -1000, "1000x", None])
def test_payouts_below_the_minimum_or_above_revenue_are_refused(gateway, db, rpc, amount):
    creator, headers = user_with_token(gateway)
    credit_revenue(gateway, creator["username"], 6000)
    answer = requests.post(f"{gateway}/rest/v2/user/payouts", json={"amount": amount, "idempotency_key": "p"}, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_parameters"
    assert rows_of(db, rpc, creator["username"])["payouts"] == 0
    assert requests.get(f"{gateway}/rest/v2/user/revenue", headers=headers).json()["balance"] == 6000


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x", "account": "revenue", "amount": 100, "idempotency_key": "k"},
        {"username": "x", "account": "fees", "amount": 100, "reason": "why", "idempotency_key": "k"},
        {"username": "x", "account": "revenue", "amount": 0, "reason": "why", "idempotency_key": "k"},
        {"username": "x", "account": "revenue", "amount": -100, "reason": "more than there is", "idempotency_key": "k"},
    ],
)
def test_bad_adjustments_are_refused(gateway, db, rpc, body):
    user, _ = user_with_token(gateway)
    body = dict(body, username=user["username"])
    answer = requests.post(f"{gateway}/admin/adjustments", json=body, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    assert rows_of(db, rpc, user["username"]) == NOTHING
    ledger_check(gateway)
