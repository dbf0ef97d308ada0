"""The button: the cookie-free iframe and badge, the first-party flattr window (sign-in, CSRF, no
framing, GET never flattrs), auto-submit, load.js and the cross-origin reads it needs."""
import json
import re
import time
import uuid
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests

from tests.factories import PASSWORD, SECRET_KEY, create_thing, deposit, eventually, user_with_token
from tests.web_forms import csrf_token, sign_in


def reader_with_means(base, budget=500):
    user, headers = user_with_token(base)
    assert requests.put(f"{base}/rest/v2/user/budget", json={"amount": budget}, headers=headers).status_code == 200
    assert deposit(base, headers, budget * 2).status_code == 201
    assert eventually(lambda: requests.get(f"{base}/rest/v2/user/wallet", headers=headers).json()["has_means"])
    return user, headers


def web_sign_in(base, user) -> requests.Session:
    browser = requests.Session()
    answer = sign_in(base, user["username"], user.get("password", PASSWORD), browser)
    assert answer.status_code == 302, answer.text
    return browser


def api_flattrs(base, thing_id) -> int:
    return requests.get(f"{base}/rest/v2/things/{thing_id}").json()["flattrs"]


def shown_count(page: requests.Response) -> int:
    return int(re.search(r'id="count"[^>]*>(\d+)<', page.text).group(1))


def result_status(page: requests.Response) -> str:
    return re.search(r'id="result" data-status="([a-z_]+)"', page.text).group(1)


def assert_not_frameable(response: requests.Response):
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


# -- the iframe and the badge -----------------------------------------------------------------------


def test_button_shows_the_count_and_a_flattr_link_without_cookies(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator, title="A button worth pressing")

    page = requests.get(f"{gateway}/button/{thing_id}")  # a fresh client: no cookies at all
    assert page.status_code == 200, page.text
    assert page.headers["Content-Type"].startswith("text/html")
    assert shown_count(page) == 0
    assert f'href="/flattr/{thing_id}"' in page.text and 'target="_blank"' in page.text
    assert "window.open(" in page.text  # the popup, with the link as the fallback
    assert "event.origin !== window.location.origin" in page.text  # listens only to its own origin
    assert "Set-Cookie" not in page.headers
    assert "X-Frame-Options" not in page.headers  # embeddable on any site
    assert "frame-ancestors *" in page.headers["Content-Security-Policy"]
    assert re.search(r"max-age=\d+", page.headers["Cache-Control"])

    again = requests.get(f"{gateway}/button/{thing_id}", cookies={"session": "garbage"})
    assert again.status_code == 200 and "Set-Cookie" not in again.headers

    missing = requests.get(f"{gateway}/button/{thing_id + 100000}")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("text/html")
    assert "no-store" in missing.headers["Cache-Control"]
    assert requests.get(f"{gateway}/button/99999999999999999999999").status_code == 404


def test_svg_badge(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    badge = requests.get(f"{gateway}/button/{thing_id}.svg")
    assert badge.status_code == 200
    assert badge.headers["Content-Type"] == "image/svg+xml"
    max_age = int(re.search(r"max-age=(\d+)", badge.headers["Cache-Control"]).group(1))
    assert 1 <= max_age <= 10
    assert badge.text.startswith("<svg") and ">0</text>" in badge.text
    assert "Set-Cookie" not in badge.headers
    assert requests.get(f"{gateway}/button/{thing_id + 100000}.svg").status_code == 404


def test_counts_are_cached_briefly_and_a_missing_thing_is_not(all_services, gateway_factory):
    base = gateway_factory(BUTTON_CACHE_SECONDS=1)
    _, creator = user_with_token(base)
    thing_id = create_thing(base, creator)
    _, reader = reader_with_means(base)

    assert shown_count(requests.get(f"{base}/button/{thing_id}")) == 0
    assert requests.post(f"{base}/rest/v2/things/{thing_id}/flattr", headers=reader).status_code == 200
    # a flattr through the API is seen by the button once its entry expires
    assert eventually(lambda: shown_count(requests.get(f"{base}/button/{thing_id}")) == 1, timeout=3)
    assert eventually(lambda: ">1</text>" in requests.get(f"{base}/button/{thing_id}.svg").text, timeout=3)

    # a "no such thing" is not remembered: the next thing's button works as soon as it exists
    next_id = thing_id + 1
    assert requests.get(f"{base}/button/{next_id}").status_code == 404
    created = create_thing(base, creator)
    assert created == next_id  # ids come from one sequence and nothing else made a thing meanwhile
    assert eventually(lambda: requests.get(f"{base}/button/{next_id}").status_code == 200, timeout=1.5)


# -- the first-party flattr window ------------------------------------------------------------------


def test_flattr_window_signs_in_first_and_cannot_be_framed(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    answer = requests.get(f"{gateway}/flattr/{thing_id}", allow_redirects=False)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [f"/flattr/{thing_id}"]
    assert_not_frameable(answer)
    # and signing in comes back to the window
    user, _ = user_with_token(gateway)
    browser = requests.Session()
    form = browser.get(f"{gateway}/login?next=/flattr/{thing_id}")
    back = browser.post(
        f"{gateway}/login",
        data={"csrf_token": csrf_token(form), "username": user["username"], "password": PASSWORD, "next": f"/flattr/{thing_id}"},
        allow_redirects=False,
    )
    assert back.headers["Location"] == f"/flattr/{thing_id}"


def test_flattr_window_confirms_with_one_csrf_protected_click(gateway):
    _, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator, title="Confirm before flattring")
    reader, _ = reader_with_means(gateway)
    browser = web_sign_in(gateway, reader)
    assert shown_count(requests.get(f"{gateway}/button/{thing_id}")) == 0  # fills the button's cache

    # GET shows the thing and one confirming button; it never flattrs
    for _ in range(2):
        window = browser.get(f"{gateway}/flattr/{thing_id}")
        assert window.status_code == 200, window.text
        assert_not_frameable(window)
        assert "Confirm before flattring" in window.text
        assert window.text.count('<button type="submit" id="confirm"') == 1
        assert f'<form method="post" action="/flattr/{thing_id}">' in window.text
    token = csrf_token(window)
    assert api_flattrs(gateway, thing_id) == 0

    # a forged POST (no token, or a token from another session) is refused and writes nothing
    forged = browser.post(f"{gateway}/flattr/{thing_id}", data={})
    assert forged.status_code == 400
    other = web_sign_in(gateway, reader)
    stolen = other.post(f"{gateway}/flattr/{thing_id}", data={"csrf_token": "not-" + token})
    assert stolen.status_code == 400
    cross_site = requests.post(f"{gateway}/flattr/{thing_id}", data={"csrf_token": token})  # no session cookie
    assert cross_site.status_code in (302, 400)
    time.sleep(0.3)
    assert api_flattrs(gateway, thing_id) == 0

    # the confirmed POST flattrs
    done = browser.post(f"{gateway}/flattr/{thing_id}", data={"csrf_token": token})
    assert done.status_code == 200, done.text
    assert_not_frameable(done)
    assert result_status(done) == "ok"
    message = json.loads(re.search(r"var message = (\{.*?\});", done.text).group(1))
    assert message == {"type": "flattr", "thing": thing_id, "flattrs": 1}
    assert "opener.postMessage(message, window.location.origin)" in done.text
    assert api_flattrs(gateway, thing_id) == 1
    # the click dropped the cached count: the button shows it at once
    assert shown_count(requests.get(f"{gateway}/button/{thing_id}")) == 1

    # again in the same period: already flattred, nothing counted twice
    twice = browser.post(f"{gateway}/flattr/{thing_id}", data={"csrf_token": token})
    assert twice.status_code == 403 and result_status(twice) == "flattr_once"
    assert api_flattrs(gateway, thing_id) == 1
    window = browser.get(f"{gateway}/flattr/{thing_id}")
    assert result_status(window) == "flattr_once" and 'id="confirm"' not in window.text


def test_flattr_window_answers_owner_no_means_and_not_found(gateway):
    owner, creator = user_with_token(gateway)
    thing_id = create_thing(gateway, creator)
    as_owner = web_sign_in(gateway, owner)
    token = csrf_token(as_owner.get(f"{gateway}/login"))
    answer = as_owner.post(f"{gateway}/flattr/{thing_id}", data={"csrf_token": token})
    assert answer.status_code == 403 and result_status(answer) == "flattr_owner"

    broke, _ = user_with_token(gateway)
    as_broke = web_sign_in(gateway, broke)
    token = csrf_token(as_broke.get(f"{gateway}/flattr/{thing_id}"))
    answer = as_broke.post(f"{gateway}/flattr/{thing_id}", data={"csrf_token": token})
    assert answer.status_code == 401 and result_status(answer) == "no_means"

    answer = as_broke.post(f"{gateway}/flattr/{thing_id + 100000}", data={"csrf_token": token})
    assert answer.status_code == 404 and result_status(answer) == "not_found"
    assert as_broke.get(f"{gateway}/flattr/{thing_id + 100000}").status_code == 404
    assert api_flattrs(gateway, thing_id) == 0


# -- auto-submit ------------------------------------------------------------------------------------


def test_auto_submit_page_and_its_first_party_flattr(gateway):
    creator, _ = user_with_token(gateway)
    target = f"https://blog.example/{uuid.uuid4().hex}"
    query = {"user_id": creator["username"], "url": target, "title": "A post registered by its first flattr", "tags": "a,b"}
    auto = f"{gateway}/submit/auto?{urlencode(query)}"

    preview = requests.get(auto)
    assert preview.status_code == 200, preview.text
    assert_not_frameable(preview)
    assert "A post registered by its first flattr" in preview.text and creator["username"] in preview.text
    assert target in preview.text
    link = re.search(r'id="flattr" href="([^"]+)"', preview.text).group(1).replace("&amp;", "&")
    assert urlsplit(link).path == "/flattr/auto"
    assert requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": target}, allow_redirects=False).status_code == 404

    # bad links are a 400 page, an unknown creator a 404 page; nothing is created by looking
    assert requests.get(f"{gateway}/submit/auto?url={quote(target)}").status_code == 400
    assert requests.get(f"{gateway}/submit/auto?user_id={creator['username']}").status_code == 400
    assert requests.get(f"{gateway}/submit/auto?user_id={creator['username']}&url=ftp://x.example/").status_code == 400
    assert requests.get(f"{gateway}/submit/auto?user_id=nobody-{uuid.uuid4().hex[:8]}&url={quote(target)}").status_code == 404

    # the flattr link: sign in, confirm (GET creates nothing), POST creates the thing and flattrs it
    anonymous = requests.get(f"{gateway}{link}", allow_redirects=False)
    assert anonymous.status_code == 302 and urlsplit(anonymous.headers["Location"]).path == "/login"
    reader, _ = reader_with_means(gateway)
    browser = web_sign_in(gateway, reader)
    confirm = browser.get(f"{gateway}{link}")
    assert confirm.status_code == 200, confirm.text
    assert_not_frameable(confirm)
    assert confirm.text.count('id="confirm"') == 1
    assert requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": target}, allow_redirects=False).status_code == 404
    hidden_url = re.search(r'name="url" value="([^"]+)"', confirm.text).group(1).replace("&amp;", "&")

    assert browser.post(f"{gateway}/flattr/auto", data={"url": hidden_url}).status_code == 400  # no CSRF token
    assert requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": target}, allow_redirects=False).status_code == 404

    done = browser.post(f"{gateway}/flattr/auto", data={"csrf_token": csrf_token(confirm), "url": hidden_url})
    assert done.status_code == 200, done.text
    assert result_status(done) == "ok"
    thing = requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": target}).json()
    assert thing["owner"]["username"] == creator["username"]
    assert thing["title"] == "A post registered by its first flattr"
    assert thing["flattrs"] == 1

    # now the auto-submit page shows the registered thing with its button
    registered = requests.get(auto)
    assert registered.status_code == 200
    assert f'src="/button/{thing["id"]}"' in registered.text
    again = browser.post(f"{gateway}/flattr/auto", data={"csrf_token": csrf_token(confirm), "url": hidden_url})
    assert result_status(again) == "flattr_once"

    # an auto-submit link naming nobody: a clear 404 page, nothing created
    ghost = f"{gateway}/submit/auto?" + urlencode({"user_id": f"ghost-{uuid.uuid4().hex[:6]}", "url": target + "/other"})
    answer = browser.post(f"{gateway}/flattr/auto", data={"csrf_token": csrf_token(confirm), "url": ghost})
    assert answer.status_code == 404
    assert browser.post(f"{gateway}/flattr/auto", data={"csrf_token": csrf_token(confirm), "url": target}).status_code == 400


# -- load.js and CORS -------------------------------------------------------------------------------


def test_load_js_is_served_and_thing_reads_are_open_cross_origin(gateway):
    script = requests.get(f"{gateway}/js/load.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("application/javascript")
    assert "max-age=" in script.headers["Cache-Control"] and script.headers.get("ETag")
    assert "FlattrButton" in script.text and "data-flattr-uid" in script.text and "/rest/v2/things/lookup" in script.text
    assert requests.get(f"{gateway}/js/load.js", headers={"If-None-Match": script.headers["ETag"]}).status_code == 304

    _, creator = user_with_token(gateway)
    url = f"https://cors.example/{uuid.uuid4().hex}"
    thing_id = create_thing(gateway, creator, url=url)
    origin = {"Origin": "http://third-party.example"}
    found = requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": url}, headers=origin, allow_redirects=False)
    assert found.status_code == 302 and found.headers["Access-Control-Allow-Origin"] == "*"
    thing = requests.get(found.headers["Location"], headers=origin)
    assert thing.json()["id"] == thing_id and thing.headers["Access-Control-Allow-Origin"] == "*"
    missing = requests.get(f"{gateway}/rest/v2/things/lookup", params={"url": url + "x"}, headers=origin)
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in thing.headers
    # nothing else is opened: not writes, not the user's own resources
    assert "Access-Control-Allow-Origin" not in requests.get(f"{gateway}/rest/v2/user", headers=origin).headers
    write = requests.post(f"{gateway}/rest/v2/things/{thing_id}/flattr", headers=origin)
    assert "Access-Control-Allow-Origin" not in write.headers


# -- the cache, without services ----------------------------------------------------------------------


class StubRpc:
    """accounts.get_things and clicks.counts for thing 1 only; counts every call."""

    def __init__(self):
        self.calls = []
        self.flattrs = 7
        self.down = False
        self.during_counts = None

    def call(self, service, method, *args, **kwargs):
        self.calls.append(method)
        if self.down:
            from services.gateway.rpc import ServiceUnavailable

            raise ServiceUnavailable("stub is down")
        if method == "get_things":
            return [{"id": 1, "url": "https://x.example/", "title": "Stub <thing>", "owner": None}] if args[0] == [1] else []
        if method == "counts":
            if self.during_counts:
                self.during_counts()
            return {"1": {"flattrs": self.flattrs, "last_flattr_at": None, "flattred": False}}
        raise AssertionError(method)


def stub_app(ttl):
    from services.gateway.app import create_app

    rpc = StubRpc()
    overrides = {"SECRET_KEY": SECRET_KEY, "FLATTR_PUBLIC_URL": "http://flattr.test", "FLATTR_RATE_LIMITS": "off", "BUTTON_CACHE_SECONDS": ttl}
    app = create_app(overrides, rpc=rpc, clicks=object())
    return app, rpc


def test_button_cache_hits_cost_no_rpc_and_expire():
    app, rpc = stub_app(0.3)
    client = app.test_client()
    first = client.get("/button/1")
    assert first.status_code == 200 and shown_count(first) == 7
    assert "Stub &lt;thing&gt;" in first.text  # escaped
    assert rpc.calls == ["get_things", "counts"]
    for _ in range(20):
        assert client.get("/button/1").data == first.data
    badge = client.get("/button/1.svg")
    assert badge.status_code == 200 and ">7</text>" in badge.text and badge.headers["Content-Type"] == "image/svg+xml"
    assert rpc.calls == ["get_things", "counts"]  # hits, from the fast path, cost nothing
    assert client.head("/button/1").status_code == 200

    rpc.flattrs = 8
    time.sleep(0.35)
    assert shown_count(client.get("/button/1")) == 8
    assert len(rpc.calls) == 4
    # a missing thing is asked about again almost at once
    assert client.get("/button/2").status_code == 404
    time.sleep(0.35)
    assert client.get("/button/2").status_code == 404
    assert rpc.calls.count("get_things") == 4


def test_button_keeps_a_stale_count_when_services_are_down():
    app, rpc = stub_app(0.1)
    client = app.test_client()
    assert shown_count(client.get("/button/1")) == 7
    rpc.down = True
    time.sleep(0.15)
    stale = client.get("/button/1")
    assert stale.status_code == 200 and shown_count(stale) == 7
    assert client.get("/button/1.svg").status_code == 200
    unknown = client.get("/button/3")
    assert unknown.status_code == 503 and unknown.headers["Retry-After"]
    assert client.get("/button/3.svg").status_code == 503


def test_a_click_during_a_reload_is_not_overwritten_by_the_older_count():
    app, rpc = stub_app(60)
    cache = app.extensions["button_cache"]
    with app.app_context():
        rpc.during_counts = lambda: cache.invalidate(1)  # a click lands while the old count is read
        assert cache.get(1).flattrs == 7
        rpc.during_counts = None
        rpc.flattrs = 8
        assert cache.get(1).flattrs == 8  # the read that straddled the click was not kept
        assert cache.get(1).flattrs == 8 and rpc.calls.count("counts") == 2
