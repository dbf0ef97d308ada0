"""Throttles wherever a secret is guessed, as an attacker would try them: passwords at /login and
by HTTP Basic (per account, growing delays, whatever the address), wrong admin tokens, refused
OAuth code exchanges and sign-ups (per address); kept in Redis so replicas share them; the client
address from trusted proxies only."""
import time
import uuid

import pytest
import requests

from tests.factories import ADMIN, PASSWORD, sign_up
from tests.web_forms import csrf_token, sign_in

WRONG = "not the password at all"
ON = "on"  # the defaults, as make dev and production run


def _tokens(base: str, username: str, password: str, address: str | None = None) -> requests.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return requests.get(f"{base}/rest/v2/user/tokens", auth=(username, password), headers=headers, timeout=10)


def _other_address() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}"


def test_thirty_wrong_passwords_on_login_are_throttled(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS=ON)
    user = sign_up(base)
    browser = requests.Session()
    answers = [sign_in(base, user["username"], WRONG, browser) for _ in range(30)]
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 429}, statuses
    assert statuses[:5] == [401] * 5  # a few typing mistakes cost nothing
    assert statuses.count(429) >= 20, statuses  # the rest waited: one check per growing delay at most
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1 and "Try again in" in refused.text
    # the right password now is refused too: the throttle does not check while the account waits
    assert sign_in(base, user["username"], PASSWORD, browser).status_code == 429


def test_password_delays_are_per_account_whatever_the_address_and_grow(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS=ON, FLATTR_TRUSTED_PROXIES=1)
    user, bystander = sign_up(base), sign_up(base)
    assert [_tokens(base, user["username"], WRONG, _other_address()).status_code for _ in range(5)] == [401] * 5
    waits = []
    for password, answer in ((WRONG, 401), (PASSWORD, 200)):
        refused = _tokens(base, user["username"], PASSWORD, _other_address())  # the right one, too soon: not checked
        assert refused.status_code == 403 and refused.json()["error"] == "rate_limit_exceeded", refused.text
        waits.append(int(refused.headers["Retry-After"]))
        # another account is not slowed down
        assert _tokens(base, bystander["username"], PASSWORD).status_code == 200
        time.sleep(waits[-1] + 0.1)
        assert _tokens(base, user["username"], password, _other_address()).status_code == answer  # one check per wait
    assert 1 <= waits[0] < waits[1], waits  # each failure doubles the next wait
    # the right password started the count again
    assert [_tokens(base, user["username"], WRONG).status_code for _ in range(4)] == [401] * 4


def test_unknown_usernames_are_throttled_like_real_ones(all_services, gateway_factory):
    base = gateway_factory()
    statuses = [_tokens(base, f"nobody-{uuid.uuid4().hex[:8]}", WRONG).status_code for _ in range(6)]
    assert statuses == [401] * 6  # each a different name: nothing to throttle
    ghost = "nobody-at-all"
    statuses = [_tokens(base, ghost, WRONG).status_code for _ in range(8)]
    assert statuses[:5] == [401] * 5 and 403 in statuses[5:], statuses


def test_forty_wrong_admin_tokens_are_throttled(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS=ON, FLATTR_TRUSTED_PROXIES=1)
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    answers = [
        requests.get(f"{base}/admin/periods", headers={"Authorization": f"Bearer guess-{n}", **attacker}, timeout=10) for n in range(40)
    ]
    statuses = [a.status_code for a in answers]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [403] * 30, statuses
    assert answers[-1].json()["error"] == "rate_limit_exceeded" and int(answers[-1].headers["Retry-After"]) > 0
    # that address is shut out for the window; the operator elsewhere is not
    assert requests.get(f"{base}/admin/periods", headers={**ADMIN, **attacker}, timeout=10).status_code == 403
    operator = {"X-Forwarded-For": "192.0.2.10"}
    assert requests.get(f"{base}/admin/periods", headers={**ADMIN, **operator}, timeout=10).status_code == 200
    # right tokens are not counted: the operator is never throttled by their own work
    assert all(requests.get(f"{base}/admin/periods", headers={**ADMIN, **operator}, timeout=10).status_code == 200 for _ in range(12))


def test_sign_ups_by_the_api_and_the_form_share_one_limit(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS="signup=2/hour")
    sign_up(base)
    browser = requests.Session()
    form = browser.get(f"{base}/signup")
    assert form.status_code == 200  # showing the form is free
    name = f"web{uuid.uuid4().hex[:8]}"
    data = {"csrf_token": csrf_token(form), "username": name, "email": f"{name}@example.com", "password": PASSWORD}
    assert browser.post(f"{base}/signup", data=data, allow_redirects=False).status_code == 302
    another = requests.Session()
    form = another.get(f"{base}/signup")
    again = another.post(
        f"{base}/signup",
        data={**data, "csrf_token": csrf_token(form), "username": name + "x", "email": f"x{name}@example.com"},
        allow_redirects=False,
    )
    assert again.status_code == 429 and "Too many attempts" in again.text and again.headers["Retry-After"]
    api = requests.post(f"{base}/rest/v2/users", json={"username": name + "y", "email": f"y{name}@example.com", "password": PASSWORD}, timeout=10)
    assert api.status_code == 403 and api.json()["error"] == "rate_limit_exceeded"
    assert requests.get(f"{base}/rest/v2/users/{name}x", timeout=10).status_code == 404


def test_refused_oauth_code_exchanges_are_throttled(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS="oauth=3/minute")
    exchange = {"grant_type": "authorization_code", "code": "guessed", "redirect_uri": "https://app.example/cb"}
    statuses = [requests.post(f"{base}/oauth/token", data=exchange, auth=("no-such-client", "guess"), timeout=10).status_code for _ in range(5)]
    assert statuses[:3] == [401] * 3 and statuses[3:] == [403, 403], statuses


def test_the_limits_hold_across_gateway_replicas(all_services, gateway_factory):
    """Two gateways on one store (Redis, as make dev and compose run it): what one counted, the
    other enforces."""
    first, second = gateway_factory(FLATTR_RATE_LIMITS="login=3/minute"), gateway_factory(FLATTR_RATE_LIMITS="login=3/minute")
    user = sign_up(first)
    assert [_tokens(first, user["username"], WRONG).status_code for _ in range(5)] == [401] * 5
    assert _tokens(second, user["username"], PASSWORD).status_code == 403
    # three wrong sign-ins from this address at the first, each for another account...
    for _ in range(3):
        assert sign_in(first, f"someone-{uuid.uuid4().hex[:6]}", WRONG).status_code == 401
    # ...and the second refuses the fourth from the same address
    assert sign_in(second, f"someone-{uuid.uuid4().hex[:6]}", WRONG).status_code == 429


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(all_services, gateway_factory):
    direct = gateway_factory(FLATTR_RATE_LIMITS="address=2/hour")
    spoofed = [requests.get(f"{direct}/rest/v2/categories", headers={"X-Forwarded-For": _other_address()}, timeout=10) for _ in range(3)]
    assert [a.status_code for a in spoofed] == [200, 200, 403]  # a made-up X-Forwarded-For changes nothing

    proxied = gateway_factory(FLATTR_RATE_LIMITS="address=2/hour", FLATTR_TRUSTED_PROXIES=1)
    # the proxy appends the address it saw; what the client wrote before it is not believed
    alice, bob = {"X-Forwarded-For": "1.2.3.4, 192.0.2.1"}, {"X-Forwarded-For": "1.2.3.4, 192.0.2.2"}
    assert [requests.get(f"{proxied}/rest/v2/categories", headers=alice, timeout=10).status_code for _ in range(3)] == [200, 200, 403]
    assert requests.get(f"{proxied}/rest/v2/categories", headers=bob, timeout=10).status_code == 200


def test_a_store_that_does_not_answer_stops_nothing_and_passwords_stay_throttled(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS=ON, FLATTR_RATE_LIMIT_STORAGE="redis://127.0.0.1:1/0")
    user = sign_up(base)
    assert requests.get(f"{base}/rest/v2/categories", timeout=10).status_code == 200
    # this process's memory stands in for the store
    statuses = [_tokens(base, user["username"], WRONG).status_code for _ in range(8)]
    assert statuses[:5] == [401] * 5 and 403 in statuses[5:], statuses


@pytest.mark.parametrize("path", ["/login", "/signup"])
def test_showing_a_form_is_never_throttled(all_services, gateway_factory, path):
    base = gateway_factory(FLATTR_RATE_LIMITS="login=1/minute;signup=1/minute")
    assert all(requests.get(f"{base}{path}", timeout=10).status_code == 200 for _ in range(5))


def test_answers_keep_their_own_retry_after_with_limits_on(gateway_factory):
    """No services: a 503 says "in 5 s", not when the limit's hour ends; a 200 says nothing."""
    base = gateway_factory(FLATTR_RATE_LIMITS=ON, RPC_TIMEOUT=2)
    down = requests.post(f"{base}/rest/v2/users", json={"username": "nobody", "email": "n@example.com", "password": PASSWORD}, timeout=10)
    assert down.status_code == 503 and down.headers["Retry-After"] == "5"
    alive = requests.get(f"{base}/healthz", timeout=10)
    assert alive.status_code == 200 and "Retry-After" not in alive.headers
    counted = requests.get(f"{base}/rest/v2/rate_limit", timeout=10)
    assert counted.headers["X-RateLimit-Limit"] and "Retry-After" not in counted.headers
