"""Sign-up and sign-in pages, CSRF protection, and the OAuth2 authorization-code flow."""
from urllib.parse import parse_qs, urlsplit

import requests

from tests.factories import PASSWORD, bearer
from tests.web_forms import csrf_token, register_app, web_sign_up
from tests.shared_platform import gateway  # noqa: F401 - one platform for the module


def test_sign_up_page_signs_the_visitor_in(gateway):
    browser, name = web_sign_up(gateway)
    assert name in browser.get(f"{gateway}/").text


def test_forms_without_a_csrf_token_are_refused(gateway):
    browser = requests.Session()
    browser.get(f"{gateway}/signup")
    answer = browser.post(f"{gateway}/signup", data={"username": "forged", "email": "f@example.com", "password": PASSWORD})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    # and nobody was created
    assert requests.get(f"{gateway}/rest/v2/users/forged").status_code == 404


def test_sign_in_page_rejects_a_wrong_password_and_accepts_the_right_one(gateway):
    _, name = web_sign_up(gateway)
    browser = requests.Session()
    form = browser.get(f"{gateway}/login?next=/apps")
    wrong = browser.post(f"{gateway}/login", data={"csrf_token": csrf_token(form), "username": name, "password": "nope nope nope"})
    assert wrong.status_code == 401
    assert "Wrong username or password" in wrong.text
    right = browser.post(
        f"{gateway}/login",
        data={"csrf_token": csrf_token(form), "username": name, "password": PASSWORD, "next": "/apps"},
        allow_redirects=False,
    )
    assert right.status_code == 302 and right.headers["Location"] == "/apps"


def test_sign_in_never_redirects_off_site(gateway):
    _, name = web_sign_up(gateway)
    browser = requests.Session()
    form = browser.get(f"{gateway}/login")
    answer = browser.post(
        f"{gateway}/login",
        data={"csrf_token": csrf_token(form), "username": name, "password": PASSWORD, "next": "https://evil.example/"},
        allow_redirects=False,
    )
    assert answer.headers["Location"] == "/"


def test_oauth_authorization_code_flow(gateway):
    browser, name = web_sign_up(gateway)
    redirect_uri = "https://reader.example/callback"
    client_id, secret = register_app(gateway, browser, redirect_uri)

    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "flattr extendedread", "state": "s123"}
    consent = browser.get(f"{gateway}/oauth/authorize", params=query)
    assert consent.status_code == 200
    assert "Feed reader" in consent.text and "extendedread" in consent.text
    approved = browser.post(
        f"{gateway}/oauth/authorize", params=query, data={"csrf_token": csrf_token(consent), "confirm": "yes"}, allow_redirects=False
    )
    assert approved.status_code == 302
    location = urlsplit(approved.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    params = parse_qs(location.query)
    assert params["state"] == ["s123"]
    code = params["code"][0]

    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    token = requests.post(f"{gateway}/oauth/token", data=exchange, auth=(client_id, secret))
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"].lower() == "bearer"
    assert set(body["scope"].split()) == {"flattr", "extendedread"}
    me = requests.get(f"{gateway}/rest/v2/user", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == name
    # the token carries only the scopes granted
    denied = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://x.example/", "title": "Not allowed"}, headers=bearer(body["access_token"]))
    assert denied.status_code == 403
    # a code works once
    assert requests.post(f"{gateway}/oauth/token", data=exchange, auth=(client_id, secret)).json()["error"] == "invalid_grant"


def test_oauth_refuses_wrong_secret_and_foreign_redirects(gateway):
    browser, _ = web_sign_up(gateway)
    redirect_uri = "https://reader.example/callback"
    client_id, secret = register_app(gateway, browser, redirect_uri)
    evil = browser.get(
        f"{gateway}/oauth/authorize",
        params={"response_type": "code", "client_id": client_id, "redirect_uri": "https://evil.example/cb", "scope": "flattr"},
    )
    assert evil.status_code == 400
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "flattr"}
    consent = browser.get(f"{gateway}/oauth/authorize", params=query)
    approved = browser.post(f"{gateway}/oauth/authorize", params=query, data={"csrf_token": csrf_token(consent), "confirm": "yes"}, allow_redirects=False)
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    wrong = requests.post(
        f"{gateway}/oauth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}, auth=(client_id, "wrong")
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"


def test_denied_consent_redirects_with_access_denied(gateway):
    browser, _ = web_sign_up(gateway)
    redirect_uri = "https://reader.example/callback"
    client_id, _ = register_app(gateway, browser, redirect_uri)
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "flattr", "state": "z"}
    consent = browser.get(f"{gateway}/oauth/authorize", params=query)
    denied = browser.post(f"{gateway}/oauth/authorize", params=query, data={"csrf_token": csrf_token(consent), "confirm": "no"}, allow_redirects=False)
    assert denied.status_code == 302
    assert parse_qs(urlsplit(denied.headers["Location"]).query)["error"] == ["access_denied"]


def test_authorize_needs_a_signed_in_user(gateway):
    answer = requests.get(f"{gateway}/oauth/authorize?response_type=code&client_id=x", allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")
