"""Safe defaults, probed as an attacker would: weak secrets refuse to start, links never follow the
Host header, no page but the button can be framed, the session cookie is Secure behind https."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.factories import ADMIN, PASSWORD, create_thing, sign_up, user_with_token
from tests.web_forms import register_app, sign_in, web_sign_up

ROOT = Path(__file__).resolve().parents[2]
EVIL = {"Host": "evil.example"}


def _gateway_process(port: int, **settings) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLATTR_")}
    env.update(GATEWAY_PORT=str(port), GATEWAY_WORKERS="1", **settings)
    return subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"FLATTR_SECRET_KEY": "changeme-dev-only", "FLATTR_PUBLIC_URL": "http://127.0.0.1:1"}, "FLATTR_SECRET_KEY"),
        (
            {"FLATTR_SECRET_KEY": "k3V9-xQ2mZr7Lw0pTb5YcN8dHs1fGj4a", "FLATTR_ADMIN_TOKEN": "admin", "FLATTR_PUBLIC_URL": "http://127.0.0.1:1"},
            "FLATTR_ADMIN_TOKEN",
        ),
        ({"FLATTR_SECRET_KEY": "k3V9-xQ2mZr7Lw0pTb5YcN8dHs1fGj4a"}, "FLATTR_PUBLIC_URL"),
        ({}, "FLATTR_SECRET_KEY"),
    ],
)
def test_weak_secrets_refuse_to_start(settings, named):
    from testsupport.instances import free_port

    process = _gateway_process(free_port(), **settings)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2, output
    assert f"will not start: {named}" in output


def test_weak_secrets_start_with_the_development_flag():
    from testsupport.instances import free_port

    port = free_port()
    process = _gateway_process(port, FLATTR_DEVELOPMENT="on", FLATTR_ADMIN_TOKEN="admin")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still importing the app
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(10)


def test_a_spoofed_host_header_changes_no_link(gateway):
    user, headers = user_with_token(gateway)
    thing_id = create_thing(gateway, headers, url="https://blog.example/spoof")
    spoofed = {**headers, **EVIL}

    lookup = requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": "https://blog.example/spoof"}, headers=EVIL, allow_redirects=False)
    assert lookup.status_code == 302
    assert lookup.headers["Location"] == f"{gateway}/rest/v2/things/{thing_id}"
    assert lookup.json()["location"] == lookup.headers["Location"]

    thing = requests.get(f"{gateway}/rest/v2/things/{thing_id}", headers=spoofed).json()
    assert thing["resource"].startswith(gateway) and thing["link"].startswith(gateway)
    assert thing["owner"]["resource"].startswith(gateway) and thing["owner"]["link"].startswith(gateway)

    created = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://blog.example/spoof-2", "title": "Spoofed host"}, headers=spoofed)
    assert created.status_code == 201 and created.json()["link"].startswith(gateway)
    taken = requests.post(f"{gateway}/rest/v2/things", json={"url": "https://blog.example/spoof", "title": "Spoofed host"}, headers=spoofed)
    assert taken.status_code == 409 and taken.headers["Location"].startswith(gateway)

    name = f"{user['username']}x"
    signed_up = requests.post(f"{gateway}/rest/v2/users", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}, headers=EVIL)
    assert signed_up.status_code == 201 and signed_up.headers["Location"] == f"{gateway}/rest/v2/users/{name}"

    auto = f"{gateway}/submit/auto?user_id={user['username']}&url=https%3A%2F%2Fblog.example%2Fnew"
    page = requests.get(auto, headers=EVIL)
    assert page.status_code == 200 and "evil.example" not in page.text

    # no path of the gateway writes the spoofed host anywhere
    for answer in (lookup, created, taken, signed_up):
        assert "evil.example" not in answer.text and "evil.example" not in str(answer.headers)


def test_sign_in_redirects_stay_on_the_platform_whatever_the_host(gateway):
    user = sign_up(gateway)
    answer = sign_in(gateway, user["username"], PASSWORD, **EVIL)
    assert answer.status_code == 302 and "evil.example" not in answer.headers["Location"]
    to_login = requests.get(f"{gateway}/apps", headers=EVIL, allow_redirects=False)
    assert to_login.status_code == 302 and "evil.example" not in to_login.headers["Location"]


def _framing(response: requests.Response) -> tuple[str | None, str]:
    return response.headers.get("X-Frame-Options"), response.headers.get("Content-Security-Policy", "")


def _refuses_framing(response: requests.Response) -> bool:
    frame_options, policy = _framing(response)
    return frame_options == "DENY" and "frame-ancestors 'none'" in policy


def test_every_html_page_but_the_button_refuses_framing(gateway):
    browser, name = web_sign_up(gateway)
    _, headers = user_with_token(gateway)
    thing_id = create_thing(gateway, headers)
    client_id, _ = register_app(gateway, browser, "https://reader.example/cb")
    authorize = {"response_type": "code", "client_id": client_id, "redirect_uri": "https://reader.example/cb", "scope": "flattr"}
    anonymous = requests.Session()
    pages = {
        "/": anonymous,
        "/login": anonymous,
        "/signup": anonymous,
        f"/thing/{thing_id}": anonymous,
        f"/profile/{name}": anonymous,
        f"/submit/auto?user_id={name}&url=https%3A%2F%2Fblog.example%2Fa": anonymous,
        "/apps": browser,
        f"/oauth/authorize?{requests.compat.urlencode(authorize)}": browser,
        "/oauth/authorize?response_type=code&client_id=nobody": browser,  # its error page too
        f"/flattr/{thing_id}": browser,
        f"/flattr/auto?url={requests.compat.quote(f'{gateway}/submit/auto?user_id={name}&url=https://blog.example/b')}": browser,
    }
    for path, session in pages.items():
        page = session.get(f"{gateway}{path}")
        assert page.headers["Content-Type"].startswith("text/html"), (path, page.status_code)
        assert _refuses_framing(page), (path, page.status_code, _framing(page))
    # answers that are not pages say so too (nothing of the platform is framed)
    assert _refuses_framing(requests.get(f"{gateway}/rest/v2/categories"))
    assert _refuses_framing(requests.get(f"{gateway}/admin/periods", headers=ADMIN))

    # the button and the badge exist to be embedded: on a miss (Flask) and on a hit (the fast path)
    for _ in range(2):
        for path in (f"/button/{thing_id}", f"/button/{thing_id}.svg"):
            embedded = requests.get(f"{gateway}{path}")
            assert embedded.status_code == 200
            frame_options, policy = _framing(embedded)
            assert frame_options is None and "frame-ancestors *" in policy, (path, _framing(embedded))


@pytest.mark.parametrize("public_url, secure", [("https://flattr.example.org", True), (None, False)])
def test_the_session_cookie_is_secure_when_the_public_url_is_https(all_services, gateway_factory, public_url, secure):
    base = gateway_factory(**({"FLATTR_PUBLIC_URL": public_url} if public_url else {}))
    form = requests.get(f"{base}/login")  # the form's CSRF token starts the session
    cookie = form.headers["Set-Cookie"]
    assert cookie.startswith("session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure, cookie
