"""Test data made through the real API, the way a user would make it."""
from __future__ import annotations

import itertools
import uuid

import requests

_counter = itertools.count(1)
PASSWORD = "correct horse battery"
# every scope a personal token may have: the money scopes too, as a user's own token for everything
ALL_SCOPES = "flattr thing email extendedread wallet payout"


def unique_username(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}-{uuid.uuid4().hex[:6]}"


def sign_up(base: str, username: str | None = None, **extra) -> dict:
    username = username or unique_username()
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD, **extra}
    response = requests.post(f"{base}/rest/v2/users", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return {"username": username, "password": PASSWORD, **response.json()}


def personal_token(base: str, user: dict, scope: str = ALL_SCOPES) -> str:
    response = requests.post(
        f"{base}/rest/v2/user/tokens", auth=(user["username"], user["password"]), data={"scope": scope}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def user_with_token(base: str, scope: str = ALL_SCOPES) -> tuple[dict, dict]:
    user = sign_up(base)
    return user, bearer(personal_token(base, user, scope))


def create_thing(base: str, headers: dict, url: str | None = None, **fields) -> int:
    body = {"url": url or f"https://example.com/{uuid.uuid4().hex}", "title": fields.pop("title", "A thing worth flattring"), **fields}
    response = requests.post(f"{base}/rest/v2/things", json=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def verified_thing(base: str, headers: dict, user: dict, pages, path: str | None = None, **fields) -> int:
    """A thing whose ownership its creator has proven: registered on a page of ``pages`` (a
    ``tests.pages.PageServer``) that names them, then claimed, so its shares are their revenue."""
    from tests.pages import claim_page

    url = pages.serve(path or f"/post-{uuid.uuid4().hex[:8]}", claim_page(owner=user["username"]))
    thing_id = create_thing(base, headers, url=url, **fields)
    response = requests.post(f"{base}/rest/v2/things/{thing_id}/claim", headers=headers, timeout=20)
    if response.status_code == 202:  # the check outlived the request: it goes on in accounts
        assert eventually(lambda: requests.get(f"{base}/rest/v2/things/{thing_id}/claim", headers=headers, timeout=10).json()["state"] == "passed", timeout=20)
    else:
        assert response.status_code == 200 and response.json()["thing"]["verified"] is True, response.text
    return thing_id


# the test gateways' admin token (tests/conftest.py): as long as the gateway demands
ADMIN_TOKEN = "test-admin-token-0123456789abcdefghijklmnop"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# a secret key the gateway accepts, for apps made by tests
SECRET_KEY = "test-secret-key-0123456789abcdefghijklmnop"


def deposit(base: str, headers: dict, amount: int, key: str | None = None) -> requests.Response:
    return requests.post(
        f"{base}/rest/v2/user/deposits", json={"amount": amount, "idempotency_key": key or uuid.uuid4().hex}, headers=headers, timeout=10
    )


def credit_revenue(base: str, username: str, amount: int) -> dict:
    """Revenue through the audited adjustments account, the one way besides settlement."""
    response = requests.post(
        f"{base}/admin/adjustments",
        json={"username": username, "account": "revenue", "amount": amount, "reason": "test revenue", "idempotency_key": uuid.uuid4().hex},
        headers=ADMIN,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def ledger_check(base: str) -> dict:
    response = requests.get(f"{base}/admin/ledger/check", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["ok"], response.json()
    return response.json()


def eventually(probe, timeout: float = 5.0, interval: float = 0.05):
    """Poll ``probe`` until it returns something truthy (for state fed by events)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def sealed_click_period(session, period: str, starts_at: str, sealed_at: str) -> None:
    """A period sealed before every other in the clicks schema, with its partition, for tests
    that put its clicks in directly (the caller commits)."""
    from sqlalchemy import text

    from services.clicks import partitions

    session.execute(
        text(
            "INSERT INTO clicks.periods (id, seq, state, starts_at, sealed_at) "
            "SELECT :p, coalesce(min(seq), 1) - 1, 'sealed', :b, :s FROM clicks.periods ON CONFLICT DO NOTHING"
        ),
        {"p": period, "b": starts_at, "s": sealed_at},
    )
    partitions.ensure_partition(session, period)
