"""OAuth as today's clients expect and yesterday's still work: PKCE (S256, required without a
secret), a replayed code revokes its token, redirect URI rules (RFC 8252) with a warning for plain
http, and the old clients' calls (gPodder 3.x's JSON code exchange and API root, the 2015 Python
Flattr client's comma-separated scopes and loopback redirect)."""
import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.factories import bearer, create_thing, eventually, user_with_token
from tests.web_forms import csrf_token, register_app, web_sign_up
from tests.shared_platform import gateway  # noqa: F401 - one platform for the module


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(base, browser, client_id, redirect_uri, scope="flattr", **extra) -> requests.Response:
    """Consent as the signed-in user; the redirect back to the client (not followed)."""
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope, **extra}
    consent = browser.get(f"{base}/oauth/authorize", params=query)
    assert consent.status_code == 200, consent.text
    return browser.post(f"{base}/oauth/authorize", params=query, data={"csrf_token": csrf_token(consent), "confirm": "yes"}, allow_redirects=False)


def code_from(answer: requests.Response) -> str:
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def exchange(base, code, redirect_uri, auth=None, **fields) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **fields}
    return requests.post(f"{base}/oauth/token", data=data, auth=auth, timeout=10)


def test_a_client_without_a_secret_signs_in_with_pkce(gateway):
    browser, _ = web_sign_up(gateway)
    redirect_uri = "com.example.reader:/oauth-callback"
    client_id, secret = register_app(gateway, browser, redirect_uri, public=True)
    assert secret is None
    # no challenge: refused before anyone consents to a code that could never be exchanged
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "flattr"}
    refused = browser.get(f"{gateway}/oauth/authorize", params=query)
    assert refused.status_code == 400 and "code_challenge" in refused.text
    plain = browser.get(f"{gateway}/oauth/authorize", params={**query, "code_challenge": "x" * 43, "code_challenge_method": "plain"})
    assert plain.status_code == 400

    verifier, challenge = pkce()
    code = code_from(authorize(gateway, browser, client_id, redirect_uri, code_challenge=challenge, code_challenge_method="S256"))
    assert exchange(gateway, code, redirect_uri, client_id=client_id).json()["error"] == "invalid_request"  # no verifier
    code = code_from(authorize(gateway, browser, client_id, redirect_uri, code_challenge=challenge, code_challenge_method="S256"))
    wrong = exchange(gateway, code, redirect_uri, client_id=client_id, code_verifier=pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code = code_from(authorize(gateway, browser, client_id, redirect_uri, code_challenge=challenge, code_challenge_method="S256"))
    token = exchange(gateway, code, redirect_uri, client_id=client_id, code_verifier=verifier)
    assert token.status_code == 200, token.text
    assert requests.get(f"{gateway}/rest/v2/user", headers=bearer(token.json()["access_token"])).status_code == 200
    # a secret it does not have is no way in either
    code = code_from(authorize(gateway, browser, client_id, redirect_uri, code_challenge=challenge, code_challenge_method="S256"))
    assert exchange(gateway, code, redirect_uri, auth=(client_id, "guess"), code_verifier=verifier).status_code == 401


def test_pkce_is_optional_for_a_client_with_a_secret_and_checked_when_used(gateway):
    browser, _ = web_sign_up(gateway)
    redirect_uri = "https://reader.example/cb"
    client_id, secret = register_app(gateway, browser, redirect_uri)
    verifier, challenge = pkce()
    code = code_from(authorize(gateway, browser, client_id, redirect_uri, code_challenge=challenge, code_challenge_method="S256"))
    assert exchange(gateway, code, redirect_uri, auth=(client_id, secret)).status_code == 400  # the verifier is owed
    code = code_from(authorize(gateway, browser, client_id, redirect_uri, code_challenge=challenge, code_challenge_method="S256"))
    assert exchange(gateway, code, redirect_uri, auth=(client_id, secret), code_verifier=verifier).status_code == 200
    code = code_from(authorize(gateway, browser, client_id, redirect_uri))
    assert exchange(gateway, code, redirect_uri, auth=(client_id, secret)).status_code == 200  # as Flattr's clients did


def test_a_replayed_code_revokes_the_token_it_issued(gateway):
    browser, _ = web_sign_up(gateway)
    redirect_uri = "https://reader.example/cb"
    client_id, secret = register_app(gateway, browser, redirect_uri)
    code = code_from(authorize(gateway, browser, client_id, redirect_uri))
    first = exchange(gateway, code, redirect_uri, auth=(client_id, secret))
    assert first.status_code == 200
    token = bearer(first.json()["access_token"])
    assert requests.get(f"{gateway}/rest/v2/user", headers=token).status_code == 200
    replayed = exchange(gateway, code, redirect_uri, auth=(client_id, secret))
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    assert eventually(lambda: requests.get(f"{gateway}/rest/v2/user", headers=token).status_code == 401)


@pytest.mark.parametrize(
    "redirect_uri, public, allowed",
    [
        ("https://reader.example/cb", True, True),
        ("http://127.0.0.1:8080/cb", True, True),
        ("http://localhost:8080", True, True),
        ("com.example.reader:/cb", True, True),
        ("gpodder://flattr-token/", False, True),
        ("http://reader.example/cb", False, True),
        ("http://reader.example/cb", True, False),
        ("javascript:alert(1)", False, False),
        ("data:text/html,hi", False, False),
        ("https://reader.example/cb#fragment", False, False),
    ],
)
def test_redirect_uris_follow_rfc_8252(gateway, redirect_uri, public, allowed):
    browser, _ = web_sign_up(gateway)
    form = browser.get(f"{gateway}/apps")
    data = {"csrf_token": csrf_token(form), "name": "App", "redirect_uri": redirect_uri, **({"public": "yes"} if public else {})}
    answer = browser.post(f"{gateway}/apps", data=data)
    assert answer.status_code == (201 if allowed else 400), answer.text


def test_consent_warns_of_a_plain_http_redirect(gateway):
    browser, _ = web_sign_up(gateway)
    for redirect_uri, warned in (("http://old-desktop.example/cb", True), ("https://reader.example/cb", False), ("http://127.0.0.1:9/cb", False)):
        client_id, _ = register_app(gateway, browser, redirect_uri)
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "flattr"}
        consent = browser.get(f"{gateway}/oauth/authorize", params=query)
        assert consent.status_code == 200
        assert ('id="insecure-redirect"' in consent.text) is warned, redirect_uri


def test_gpodder_3_signs_in_and_flattrs(gateway):
    """gPodder's Flattr support (2012-2016): a JSON code exchange with HTTP Basic, the API root as
    its reachability check, then its calls with JSON headers."""
    root = requests.get(f"{gateway}/rest/v2")
    assert root.status_code == 200 and root.headers["Content-Type"].startswith("application/json")
    first_line = root.text.splitlines()[0]
    assert json.loads(first_line)["message"] == "hello_world" and '"message": "hello_world"' in first_line

    browser, name = web_sign_up(gateway)
    callback = "gpodder://flattr-token/"
    client_id, secret = register_app(gateway, browser, callback, name="gPodder")
    code = code_from(authorize(gateway, browser, client_id, callback, scope="flattr"))
    answer = requests.post(
        f"{gateway}/oauth/token",
        data=json.dumps({"code": code, "grant_type": "authorization_code", "redirect_uri": callback}),
        headers={"Content-Type": "application/json"},
        auth=(client_id, secret),
    )
    assert answer.status_code == 200, answer.text
    headers = {"Content-Type": "application/json", **bearer(answer.json()["access_token"])}
    assert requests.get(f"{gateway}/rest/v2/user", headers=headers).json()["username"] == name

    _, owner = user_with_token(gateway)
    create_thing(gateway, owner, url="https://podcast.example/episode-1")
    found = requests.get(f"{gateway}/rest/v2/things/lookup/?url=https://podcast.example/episode-1", headers=headers)
    assert found.status_code == 200 and found.json()["flattrs"] == 0 and found.json()["flattred"] is False
    flattred = requests.post(f"{gateway}/rest/v2/flattr", data=json.dumps({"url": "https://podcast.example/episode-1"}), headers=headers)
    assert flattred.status_code == 401 and flattred.json()["error"] == "no_means"  # a real answer, not a broken request


@pytest.mark.parametrize("body", ["[1, 2]", '{"code": ["x"]}', "not json", '{"grant_type": true}'])
def test_odd_json_token_requests_are_refused_cleanly(gateway, body):
    answer = requests.post(f"{gateway}/oauth/token", data=body, headers={"Content-Type": "application/json"}, auth=("nobody", "nothing"))
    assert 400 <= answer.status_code < 500 and "error" in answer.json()


def test_the_2015_python_client_asks_with_commas_and_a_loopback_redirect(gateway):
    browser, _ = web_sign_up(gateway)
    redirect_uri = "http://localhost:8080"
    client_id, secret = register_app(gateway, browser, redirect_uri)
    code = code_from(authorize(gateway, browser, client_id, redirect_uri, scope="flattr,thing,email,extendedread"))
    token = exchange(gateway, code, redirect_uri, auth=(client_id, secret))
    assert token.status_code == 200, token.text
    assert set(token.json()["scope"].split()) == {"flattr", "thing", "email", "extendedread"}
    headers = bearer(token.json()["access_token"])
    assert "email" in requests.get(f"{gateway}/rest/v2/user", headers=headers).json()
    assert requests.post(f"{gateway}/rest/v2/things", json={"url": "https://py.example/a", "title": "From the 2015 client"}, headers=headers).status_code == 201
