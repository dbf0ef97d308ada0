"""Money needs its own scopes: ``wallet`` (budget, wallet, deposits) and ``payout`` (revenue,
payouts), on personal tokens only; statements need either; a token with no scope is never made;
listing and revoking tokens needs the password, not a token."""
import uuid

import pytest
import requests

from tests.factories import bearer, credit_revenue, deposit, eventually, personal_token, sign_up
from tests.shared_platform import gateway, rpc  # noqa: F401 - one platform for the module

NOT_MONEY = "flattr thing email extendedread"


def _error(response) -> tuple[int, str]:
    return response.status_code, response.json().get("error")


def _balance(base: str, user: dict) -> int:
    reader = bearer(personal_token(base, user, "wallet"))
    return requests.get(f"{base}/rest/v2/user/wallet", headers=reader, timeout=10).json()["balance"]


@pytest.mark.parametrize("data", [{"scope": ""}, {"scope": "  , "}, {}, None])
def test_a_token_without_a_scope_is_refused_at_creation(gateway, data):
    user = sign_up(gateway)
    response = requests.post(f"{gateway}/rest/v2/user/tokens", auth=(user["username"], user["password"]), data=data, timeout=10)
    assert _error(response) == (400, "invalid_parameters"), response.text
    assert "access_token" not in response.text
    listed = requests.get(f"{gateway}/rest/v2/user/tokens", auth=(user["username"], user["password"]), timeout=10)
    assert listed.json() == []


def test_a_token_without_wallet_cannot_set_a_budget_or_deposit(gateway):
    user = sign_up(gateway)
    for scope in (NOT_MONEY, "payout"):
        headers = bearer(personal_token(gateway, user, scope))
        budget = requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": 500}, headers=headers, timeout=10)
        assert _error(budget) == (403, "insufficient_scope"), (scope, budget.text)
        assert "wallet" in budget.json()["error_description"]
        assert _error(requests.get(f"{gateway}/rest/v2/user/budget", headers=headers, timeout=10)) == (403, "insufficient_scope")
        assert _error(requests.get(f"{gateway}/rest/v2/user/wallet", headers=headers, timeout=10)) == (403, "insufficient_scope")
        assert _error(deposit(gateway, headers, 1000)) == (403, "insufficient_scope")
    # nothing was written: no budget, no money
    wallet = bearer(personal_token(gateway, user, "wallet"))
    assert requests.get(f"{gateway}/rest/v2/user/budget", headers=wallet, timeout=10).json()["amount"] is None
    assert _balance(gateway, user) == 0
    # and with the scope it works
    assert requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": 500}, headers=wallet, timeout=10).status_code == 200
    assert deposit(gateway, wallet, 1000).status_code == 201
    assert _balance(gateway, user) == 1000


def test_a_token_without_payout_cannot_see_revenue_or_ask_for_a_payout(gateway):
    user = sign_up(gateway)
    credit_revenue(gateway, user["username"], 2000)
    body = {"amount": 1000, "idempotency_key": uuid.uuid4().hex}
    for scope in (NOT_MONEY, "wallet"):
        headers = bearer(personal_token(gateway, user, scope))
        asked = requests.post(f"{gateway}/rest/v2/user/payouts", json=body, headers=headers, timeout=10)
        assert _error(asked) == (403, "insufficient_scope"), (scope, asked.text)
        assert _error(requests.get(f"{gateway}/rest/v2/user/revenue", headers=headers, timeout=10)) == (403, "insufficient_scope")
        assert _error(requests.get(f"{gateway}/rest/v2/user/payouts", headers=headers, timeout=10)) == (403, "insufficient_scope")
        assert _error(requests.get(f"{gateway}/rest/v2/user/payouts/1", headers=headers, timeout=10)) == (403, "insufficient_scope")
    payout = bearer(personal_token(gateway, user, "payout"))
    assert requests.get(f"{gateway}/rest/v2/user/payouts", headers=payout, timeout=10).json() == []  # none was made
    assert requests.get(f"{gateway}/rest/v2/user/revenue", headers=payout, timeout=10).json()["balance"] == 2000
    assert requests.post(f"{gateway}/rest/v2/user/payouts", json=body, headers=payout, timeout=10).status_code == 202


def test_statements_need_wallet_or_payout(gateway):
    user = sign_up(gateway)
    period = "2020-01"  # never settled: the answer is its state, not 403
    url = f"{gateway}/rest/v2/user/statements/{period}"
    neither = requests.get(url, headers=bearer(personal_token(gateway, user, NOT_MONEY)), timeout=10)
    assert _error(neither) == (403, "insufficient_scope")
    for scope in ("wallet", "payout"):
        answer = requests.get(url, headers=bearer(personal_token(gateway, user, scope)), timeout=10)
        assert answer.status_code != 403, (scope, answer.text)
        assert answer.status_code < 500, answer.text


def test_oauth_clients_never_get_money_scopes(gateway, rpc):
    from services.common.errors import InvalidParameters

    user_id = rpc.accounts.get_user(username=sign_up(gateway)["username"])["id"]
    client = rpc.accounts.register_client(user_id, "App", "https://app.example/cb")
    with pytest.raises(InvalidParameters):
        rpc.accounts.store_oauth_token("app-token-" + uuid.uuid4().hex, client["client_id"], user_id, "flattr wallet")
    with pytest.raises(InvalidParameters):
        rpc.accounts.store_authorization_code("code-" + uuid.uuid4().hex, client["client_id"], user_id, "https://app.example/cb", "payout")


def test_tokens_are_listed_and_revoked_with_the_password_not_a_token(gateway):
    user = sign_up(gateway)
    basic = (user["username"], user["password"])
    token = personal_token(gateway, user, "thing wallet payout")
    listed = requests.get(f"{gateway}/rest/v2/user/tokens", headers=bearer(token), timeout=10)
    assert listed.status_code == 401 and listed.headers["WWW-Authenticate"].startswith("Basic")
    token_id = requests.get(f"{gateway}/rest/v2/user/tokens", auth=basic, timeout=10).json()[0]["id"]
    assert requests.delete(f"{gateway}/rest/v2/user/tokens/{token_id}", headers=bearer(token), timeout=10).status_code == 401
    assert requests.get(f"{gateway}/rest/v2/user", headers=bearer(token), timeout=10).status_code == 200  # still alive
    wrong = requests.delete(f"{gateway}/rest/v2/user/tokens/{token_id}", auth=(user["username"], "not the password"), timeout=10)
    assert _error(wrong) == (401, "unauthorized")
    assert requests.delete(f"{gateway}/rest/v2/user/tokens/{token_id}", auth=basic, timeout=10).status_code == 204
    # the gateway cached the token above, and drops it when it hears of the revocation
    assert eventually(lambda: requests.get(f"{gateway}/rest/v2/user", headers=bearer(token), timeout=10).status_code == 401)
