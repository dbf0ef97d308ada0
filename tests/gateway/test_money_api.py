"""Money in and out over HTTP: deposits, wallets and means, revenue, payouts, the admin endpoints."""

import requests
from sqlalchemy import text

from tests.factories import ADMIN, credit_revenue, deposit, eventually, ledger_check, user_with_token


def wallet(base, headers):
    response = requests.get(f"{base}/rest/v2/user/wallet", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_deposit_funds_the_wallet_and_means_follow_the_budget(gateway):
    _, headers = user_with_token(gateway)
    first = wallet(gateway, headers)
    assert {k: first[k] for k in ("balance", "budget", "currency", "has_means")} == {"balance": 0, "budget": None, "currency": "EUR", "has_means": False}
    assert first["period"]["id"] and isinstance(first["period"]["starts_at"], int)
    answer = deposit(gateway, headers, 1500)
    assert answer.status_code == 201
    assert answer.json()["amount"] == 1500 and answer.json()["state"] == "completed"
    assert wallet(gateway, headers)["balance"] == 1500
    assert wallet(gateway, headers)["has_means"] is False  # no budget yet
    requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": 1000}, headers=headers)
    assert eventually(lambda: wallet(gateway, headers)["has_means"])
    assert wallet(gateway, headers)["budget"] == 1000
    requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": 2000}, headers=headers)
    assert eventually(lambda: not wallet(gateway, headers)["has_means"])
    ledger_check(gateway)


def test_same_idempotency_key_records_one_deposit(gateway, db):
    _, headers = user_with_token(gateway)
    first = deposit(gateway, headers, 700, key="order-1")
    again = deposit(gateway, headers, 700, key="order-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    other_amount = deposit(gateway, headers, 800, key="order-1")
    assert other_amount.status_code == 409
    assert wallet(gateway, headers)["balance"] == 700
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM settlement.deposits")).scalar() == 1
    ledger_check(gateway)


def test_deposits_by_form(gateway):
    _, headers = user_with_token(gateway)
    assert requests.post(f"{gateway}/rest/v2/user/deposits", data={"amount": "250", "idempotency_key": "f1"}, headers=headers).status_code == 201
    assert wallet(gateway, headers)["balance"] == 250


def test_payout_of_adjusted_revenue_completes(gateway):
    creator, headers = user_with_token(gateway)
    credit_revenue(gateway, creator["username"], 5000)
    revenue = requests.get(f"{gateway}/rest/v2/user/revenue", headers=headers).json()
    assert revenue == {"balance": 5000, "currency": "EUR", "periods": []}
    answer = requests.post(f"{gateway}/rest/v2/user/payouts", json={"amount": 3000, "idempotency_key": "p1"}, headers=headers)
    assert answer.status_code == 202
    payout = answer.json()
    assert payout["state"] in ("requested", "completed") and payout["amount"] == 3000
    assert requests.get(f"{gateway}/rest/v2/user/revenue", headers=headers).json()["balance"] == 2000

    def completed():
        state = requests.get(f"{gateway}/rest/v2/user/payouts/{payout['id']}", headers=headers).json()["state"]
        return state == "completed"

    assert eventually(completed)
    listed = requests.get(f"{gateway}/rest/v2/user/payouts", headers=headers).json()
    assert [(p["id"], p["state"]) for p in listed] == [(payout["id"], "completed")]
    totals = ledger_check(gateway)["totals"]
    assert totals["paid_out"] == 3000 and totals["revenue"] == 2000 and totals["payouts_in_flight"] == 0


def test_failed_payout_returns_the_money_to_revenue(gateway):
    creator, headers = user_with_token(gateway)
    credit_revenue(gateway, creator["username"], 5000)
    payout = requests.post(f"{gateway}/rest/v2/user/payouts", json={"amount": 1013, "idempotency_key": "p-fail"}, headers=headers).json()

    def settled():
        found = requests.get(f"{gateway}/rest/v2/user/payouts/{payout['id']}", headers=headers).json()
        return found if found["state"] != "requested" else None

    final = eventually(settled)
    assert final["state"] == "failed" and "declined" in final["reason"]
    assert requests.get(f"{gateway}/rest/v2/user/revenue", headers=headers).json()["balance"] == 5000
    ledger_check(gateway)


def test_someone_elses_payout_is_not_found(gateway):
    alice, alice_headers = user_with_token(gateway)
    _, bob_headers = user_with_token(gateway)
    credit_revenue(gateway, alice["username"], 2000)
    payout = requests.post(f"{gateway}/rest/v2/user/payouts", json={"amount": 1000, "idempotency_key": "a"}, headers=alice_headers).json()
    assert requests.get(f"{gateway}/rest/v2/user/payouts/{payout['id']}", headers=bob_headers).status_code == 404
    assert requests.get(f"{gateway}/rest/v2/user/payouts", headers=bob_headers).json() == []


def test_admin_endpoints_need_the_admin_token(gateway, gateway_factory):
    assert requests.get(f"{gateway}/admin/ledger/check").status_code == 401
    assert requests.get(f"{gateway}/admin/ledger/check", headers={"Authorization": "Bearer wrong"}).status_code == 401
    _, headers = user_with_token(gateway)
    assert requests.get(f"{gateway}/admin/ledger/check", headers=headers).status_code == 401
    disabled = gateway_factory(FLATTR_ADMIN_TOKEN="")
    assert requests.get(f"{disabled}/admin/ledger/check", headers=ADMIN).status_code == 403


def test_money_endpoints_need_a_token(gateway):
    for method, path in [("get", "wallet"), ("post", "deposits"), ("get", "revenue"), ("post", "payouts"), ("get", "payouts")]:
        assert getattr(requests, method)(f"{gateway}/rest/v2/user/{path}").status_code == 401


def test_ledger_check_answers_500_when_the_books_are_wrong(gateway, db):
    creator, _ = user_with_token(gateway)
    credit_revenue(gateway, creator["username"], 1000)
    # break the books behind the ledger's back, as only a superuser with triggers off could
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE settlement.ledger_accounts DISABLE TRIGGER ledger_balance_guard"))
        conn.execute(text("UPDATE settlement.ledger_accounts SET balance = balance + 1 WHERE kind = 'revenue'"))
        conn.execute(text("ALTER TABLE settlement.ledger_accounts ENABLE TRIGGER ledger_balance_guard"))
    answer = requests.get(f"{gateway}/admin/ledger/check", headers=ADMIN)
    assert answer.status_code == 500
    failures = " ".join(answer.json()["failures"])
    assert "sum to 1" in failures and "differ from the sum of their postings" in failures


def test_an_adjustment_names_the_admin_credential_as_its_actor_and_its_key_is_per_user(gateway, db):
    first, _ = user_with_token(gateway)
    second, _ = user_with_token(gateway)

    def adjust(user, amount, **extra):
        body = {"username": user["username"], "account": "revenue", "amount": amount, "reason": "late payment", "idempotency_key": "fix-7", **extra}
        return requests.post(f"{gateway}/admin/adjustments", json=body, headers=ADMIN, timeout=10)

    made = adjust(first, 900, actor="somebody else")
    assert made.status_code == 201, made.text
    again = adjust(first, 900)
    assert again.status_code == 200 and again.json() == {**made.json(), "created": False}
    assert adjust(first, 901).status_code == 409
    assert adjust(second, 400).status_code == 201  # the same key, another user: another adjustment
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT u.username, a.amount, a.actor FROM settlement.adjustments a JOIN accounts.users u ON u.id = a.owner_id ORDER BY a.id")
        ).all()
    assert [tuple(r) for r in rows] == [(first["username"], 900, "admin"), (second["username"], 400, "admin")]
    assert ledger_check(gateway)["totals"]["adjustments"] == -1300
