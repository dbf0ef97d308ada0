"""Bad input gets a clear 4xx in Flattr's error format and writes nothing."""
import pytest
import requests
from sqlalchemy import text

from tests.factories import user_with_token
from tests.shared_platform import db, gateway, rpc  # noqa: F401 - one platform for the module


def _error(response, status, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "error_description"}
    if code:
        assert body["error"] == code
    return body


@pytest.mark.parametrize(
    "body",
    [
        {"url": "not a url", "title": "Valid title"},
        {"url": "ftp://x.example/", "title": "Valid title"},
        {"url": "https://x.example/", "title": "abc"},
        {"url": "https://x.example/", "title": "Valid title", "category": "cats"},
        {"url": "https://x.example/", "title": "Valid title", "language": "klingon"},
        {"url": "https://x.example/", "title": "Valid title", "hidden": "maybe"},
        {"url": "https://x.example/", "title": "Valid title", "description": "d" * 1001},
        {"url": "https://x.example/", "title": ["not", "text"]},
        {"title": "No url at all"},
        {"url": "https://x.example/\x00", "title": "Valid title"},
    ],
)
def test_invalid_things_are_refused_and_not_written(gateway, db, body):
    user, headers = user_with_token(gateway)
    _error(requests.post(f"{gateway}/rest/v2/things", json=body, headers=headers), 400)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts.things t JOIN accounts.users u ON u.id = t.owner_id WHERE u.username = :u"),
                            {"u": user["username"]}).scalar() == 0


def test_malformed_bodies(gateway):
    _, headers = user_with_token(gateway)
    _error(requests.post(f"{gateway}/rest/v2/things", data="{not json", headers={**headers, "Content-Type": "application/json"}), 400)
    _error(requests.post(f"{gateway}/rest/v2/things", json=[1, 2], headers=headers), 400)
    _error(requests.post(f"{gateway}/rest/v2/things", data=b"x" * 70000, headers=headers), 413)
    # an empty POST with no content type is valid where nothing is required
    _error(requests.post(f"{gateway}/rest/v2/things", headers=headers), 400, "invalid_parameters")


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "email": "ab@example.com", "password": "long enough"},
        {"username": "Upper", "email": "u@example.com", "password": "long enough"},
        {"username": "shortpw", "email": "s@example.com", "password": "short"},
        {"username": "bademail", "email": "nope", "password": "long enough"},
        {"username": "missing"},
        {"username": 12345, "email": "n@example.com", "password": "long enough"},
    ],
)
def test_invalid_sign_ups(gateway, db, body):
    _error(requests.post(f"{gateway}/rest/v2/users", json=body), 400)
    with db.connect() as conn:
        written = conn.execute(text("SELECT count(*) FROM accounts.users WHERE username = :u OR email = :e"),
                               {"u": str(body.get("username")), "e": str(body.get("email"))}).scalar()
    assert written == 0


@pytest.mark.parametrize("amount", [199, 0, -500, 100001, "lots", 2.5, None, True, "9" * 40])
def test_invalid_budgets(gateway, amount):
    _, headers = user_with_token(gateway)
    _error(requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": amount}, headers=headers), 400)
    assert requests.get(f"{gateway}/rest/v2/user/budget", headers=headers).json()["amount"] is None


def test_budget_by_form_and_json(gateway):
    _, headers = user_with_token(gateway)
    assert requests.put(f"{gateway}/rest/v2/user/budget", data={"amount": "250"}, headers=headers).json() == {"amount": 250, "currency": "EUR"}
    assert requests.put(f"{gateway}/rest/v2/user/budget/", json={"amount": 300}, headers=headers).json()["amount"] == 300
    assert requests.get(f"{gateway}/rest/v2/user/budget", headers=headers).json()["amount"] == 300


@pytest.mark.parametrize("path", ["/rest/v2/things/abc", "/rest/v2/things/1,,x", "/rest/v2/things/" + ",".join(["1"] * 101)])
def test_bad_ids(gateway, path):
    _error(requests.get(f"{gateway}{path}"), 400, "invalid_parameters")


def test_unknown_paths_and_methods(gateway):
    _error(requests.get(f"{gateway}/rest/v2/nothing-here"), 404, "not_found")
    _error(requests.get(f"{gateway}/rest/v2/users/no-such-user"), 404, "user_not_found")
    _error(requests.put(f"{gateway}/rest/v2/categories"), 405)


@pytest.mark.parametrize("query", [{"page": "0"}, {"count": "1000"}, {"page": "x"}, {"category": "cats"}, {"language": "xx"}])
def test_bad_search_parameters(gateway, query):
    _error(requests.get(f"{gateway}/rest/v2/things/search", params=query), 400)


def test_oauth_tokens_are_refused_on_money_endpoints(gateway, rpc):
    from tests.factories import sign_up

    user = sign_up(gateway)
    user_id = rpc.accounts.get_user(username=user["username"])["id"]
    client = rpc.accounts.register_client(user_id, "Some app", "https://app.example/cb")
    rpc.accounts.store_oauth_token("app-token-123456789", client["client_id"], user_id, "flattr thing")
    response = requests.put(f"{gateway}/rest/v2/user/budget", json={"amount": 500}, headers={"Authorization": "Bearer app-token-123456789"})
    _error(response, 403, "insufficient_scope")
