"""The platform's web pages driven as a browser would: forms with their CSRF tokens."""
from __future__ import annotations

import re

import requests

from tests.factories import PASSWORD, unique_username


def csrf_token(page: requests.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text[:2000]
    return match.group(1)


def web_sign_up(base: str) -> tuple[requests.Session, str]:
    browser = requests.Session()
    name = unique_username("web")
    form = browser.get(f"{base}/signup")
    answer = browser.post(
        f"{base}/signup",
        data={"csrf_token": csrf_token(form), "username": name, "email": f"{name}@example.com", "password": PASSWORD},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    return browser, name


def sign_in(base: str, username: str, password: str, browser: requests.Session | None = None, **headers) -> requests.Response:
    """One try at /login with a fresh form; the answer, not followed."""
    browser = browser or requests.Session()
    form = browser.get(f"{base}/login", headers=headers)
    data = {"csrf_token": csrf_token(form), "username": username, "password": password}
    return browser.post(f"{base}/login", data=data, headers=headers, allow_redirects=False)


def register_app(base: str, browser: requests.Session, redirect_uri: str, name: str = "Feed reader", public: bool = False) -> tuple[str, str | None]:
    """The new application's client id and secret (None for one registered without a secret)."""
    form = browser.get(f"{base}/apps")
    data = {"csrf_token": csrf_token(form), "name": name, "redirect_uri": redirect_uri, **({"public": "yes"} if public else {})}
    page = browser.post(f"{base}/apps", data=data)
    assert page.status_code == 201, page.text
    client_id = re.search(r'id="client_id">([^<]+)<', page.text).group(1)
    secret = re.search(r'id="client_secret">([^<]+)<', page.text)
    assert (secret is None) == public, page.text
    return client_id, secret.group(1) if secret else None
