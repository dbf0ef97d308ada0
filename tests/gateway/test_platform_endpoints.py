"""Health, readiness, metrics, rate limits and what happens when a service is down."""
import time

import requests

from tests.factories import bearer, create_thing, personal_token, sign_up, user_with_token


def test_healthz_answers_without_any_service(gateway_factory):
    base = gateway_factory()
    assert requests.get(f"{base}/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_service(gateway):
    response = requests.get(f"{gateway}/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"accounts": "ok", "clicks": "ok", "settlement": "ok", "broker": "ok"}


def test_readyz_and_api_answer_503_when_a_service_is_down(start_services, gateway_factory):
    from services.accounts.service import AccountsService

    start_services(AccountsService)
    base = gateway_factory(RPC_TIMEOUT=2)
    ready = requests.get(f"{base}/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["accounts"] == "ok"
    assert ready.json()["checks"]["clicks"].startswith("unavailable")
    assert ready.headers["Retry-After"]


def test_api_answers_503_never_a_false_success_without_accounts(gateway_factory):
    base = gateway_factory(RPC_TIMEOUT=2)
    response = requests.post(f"{base}/rest/v2/users", json={"username": "nobody", "email": "n@example.com", "password": "long enough"})
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["Retry-After"]


def test_metrics_count_requests_per_endpoint(gateway):
    requests.get(f"{gateway}/rest/v2/categories")
    requests.get(f"{gateway}/rest/v2/things/424242")
    text = requests.get(f"{gateway}/metrics").text
    assert 'gateway_requests_total{endpoint="/rest/v2/categories",method="GET",status="200"}' in text
    assert 'gateway_requests_total{endpoint="/rest/v2/things/<ids>",method="GET",status="404"}' in text
    assert "gateway_rpc_seconds_bucket" in text
    assert 'gateway_errors_total{code="not_found"}' in text


def test_rate_limits_per_address_with_headers(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS="address=3/hour")
    answers = [requests.get(f"{base}/rest/v2/categories") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 403]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[0].headers["X-RateLimit-Remaining"] == "2"
    assert answers[3].json()["error"] == "rate_limit_exceeded"
    assert int(answers[3].headers["Retry-After"]) > 0


def test_rate_limits_per_token_are_separate_from_the_address(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS="token=2/hour;address=100/hour")
    user = sign_up(base)
    first, second = (bearer(personal_token(base, user, "thing")) for _ in range(2))
    assert [requests.get(f"{base}/rest/v2/user", headers=first).status_code for _ in range(3)] == [200, 200, 403]
    assert requests.get(f"{base}/rest/v2/user", headers=second).status_code == 200
    answer = requests.get(f"{base}/rest/v2/rate_limit", headers=second)
    status = answer.json()
    assert status["hourly_limit"] == 2 == int(answer.headers["X-RateLimit-Limit"])
    assert status["remaining_hits"] == int(answer.headers["X-RateLimit-Remaining"]) < 2
    assert requests.get(f"{base}/rest/v2/categories").status_code == 200


def test_sign_ups_have_their_own_limit(all_services, gateway_factory):
    base = gateway_factory(FLATTR_RATE_LIMITS="signup=2/hour")
    codes = [
        requests.post(f"{base}/rest/v2/users", json={"username": f"limited{i}", "email": f"l{i}@example.com", "password": "long enough"}).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 403]


def test_revoked_token_stops_working_at_once_in_a_gateway_that_cached_it(rpc, all_services, gateway_factory):
    base = gateway_factory()
    user, headers = user_with_token(base, "thing")
    assert requests.get(f"{base}/rest/v2/user", headers=headers).status_code == 200
    time.sleep(1)  # the gateway's revocation listener, started by that first request, is connected
    assert requests.get(f"{base}/rest/v2/user", headers=headers).status_code == 200  # now cached, for minutes
    [caller] = rpc.accounts.authenticate_tokens([headers["Authorization"].split()[1]]).values()
    rpc.accounts.revoke_token(caller["user_id"], caller["token_id"])
    deadline = time.monotonic() + 2
    while requests.get(f"{base}/rest/v2/user", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the revoked token still works after 2 s"
        time.sleep(0.05)


def test_flattrs_by_a_known_token_and_by_a_new_one_share_one_rate_limit(all_services, gateway_factory):
    """The first flattr of a token goes through Flask (the token is checked), the next ones by the
    click path's own way through the gateway: one bucket, one count, the same headers."""
    setup = gateway_factory(FLATTR_RATE_LIMITS="off")
    _, owner_headers = user_with_token(setup, "thing")
    things = [create_thing(setup, owner_headers) for _ in range(4)]
    _, headers = user_with_token(setup, "flattr")
    base = gateway_factory(FLATTR_RATE_LIMITS="token=3/hour")
    answers = [requests.post(f"{base}/rest/v2/things/{t}/flattr", headers=headers, timeout=15) for t in things]
    # no means yet: each is answered no_means (401), and each counts against the limit
    assert [a.json()["error"] for a in answers[:3]] == ["no_means"] * 3
    assert [int(a.headers["X-RateLimit-Remaining"]) for a in answers[:3]] == [2, 1, 0]
    assert all(a.headers["X-RateLimit-Limit"] == "3" for a in answers[:3])
    assert answers[3].status_code == 403 and answers[3].json()["error"] == "rate_limit_exceeded"
