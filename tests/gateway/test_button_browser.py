"""The button in a real browser, embedded on another site.

A third-party page (served from ``http://localhost:<port>``, another site than the gateway's
``http://127.0.0.1:<port>``) includes ``load.js`` and a ``<a class="FlattrButton">``; headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium with the driver's path
given, so Selenium Manager downloads nothing) shows the button iframe with the count, a reader
signs in and confirms in the first-party flattr window, the click is counted once, and the
button in the embedding page shows the new count.
"""
import os
import shutil
import tempfile
import uuid
from urllib.parse import parse_qs, urlsplit

import eventlet
import pytest
import requests
from eventlet import wsgi

from tests.factories import PASSWORD, create_thing, deposit, eventually, user_with_token

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.isfile("/usr/bin/chromedriver") else None)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,800",
)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="flattr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def third_party_site():
    """``serve(html)`` puts a page on another site (localhost, not 127.0.0.1); returns its address."""
    pages = {}

    def app(environ, start_response):
        body = pages.get(environ["PATH_INFO"])
        if body is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")])
        return [body.encode()]

    sock = eventlet.listen(("127.0.0.1", 0))
    thread = eventlet.spawn(wsgi.server, sock, app, log_output=False)
    port = sock.getsockname()[1]

    def serve(html: str, path: str = "/post.html") -> str:
        pages[path] = html
        return f"http://localhost:{port}{path}"

    yield serve
    thread.kill()
    sock.close()


def reader_with_means(base, budget=500):
    user, headers = user_with_token(base)
    assert requests.put(f"{base}/rest/v2/user/budget", json={"amount": budget}, headers=headers).status_code == 200
    assert deposit(base, headers, budget * 2).status_code == 201
    assert eventually(lambda: requests.get(f"{base}/rest/v2/user/wallet", headers=headers).json()["has_means"])
    return user, headers


def test_embedded_button_flattrs_through_the_first_party_window(gateway, browser, third_party_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    creator, creator_headers = user_with_token(gateway)
    thing_url = f"https://blog.example/{uuid.uuid4().hex}"
    thing_id = create_thing(gateway, creator_headers, url=thing_url, title="An embedded post")
    reader, _ = reader_with_means(gateway)
    unregistered = f"https://blog.example/draft-{uuid.uuid4().hex}"

    page = third_party_site(
        f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Someone's blog</title></head>
<body>
<h1>An embedded post</h1>
<p><a class="FlattrButton" id="registered" href="{thing_url}">Flattr this post</a></p>
<p><a class="FlattrButton" id="unregistered" href="{unregistered}" data-flattr-uid="{creator['username']}"
      data-flattr-title="A draft not on Flattr yet">Flattr the draft</a></p>
<script src="{gateway}/js/load.js" async></script>
</body></html>"""
    )
    wait = WebDriverWait(browser, 10)
    browser.get(page)
    main = browser.current_window_handle

    # load.js found the thing by its URL and put the button iframe in place of the anchor
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe.FlattrButtonFrame")))
    assert frame.get_attribute("src") == f"{gateway}/button/{thing_id}"
    # the unregistered URL with a creator became a link to its auto-submit page
    auto = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "a.FlattrButtonAutoSubmit")))
    auto_href = urlsplit(auto.get_attribute("href"))
    assert f"{auto_href.scheme}://{auto_href.netloc}" == gateway and auto_href.path == "/submit/auto"
    assert parse_qs(auto_href.query) == {
        "user_id": [creator["username"]],
        "url": [unregistered],
        "title": ["A draft not on Flattr yet"],
    }

    browser.switch_to.frame(frame)
    wait.until(ec.text_to_be_present_in_element((By.ID, "count"), "0"))
    assert browser.get_cookies() == []  # the button set no cookie

    # the click opens the first-party flattr window; it asks the reader to sign in first
    browser.find_element(By.ID, "flattr").click()
    wait.until(lambda d: len(d.window_handles) == 2)
    popup = next(h for h in browser.window_handles if h != main)
    browser.switch_to.window(popup)
    wait.until(lambda d: urlsplit(d.current_url).path == "/login")
    assert parse_qs(urlsplit(browser.current_url).query)["next"] == [f"/flattr/{thing_id}"]
    browser.find_element(By.ID, "username").send_keys(reader["username"])
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    # back in the window: one confirming click
    confirm = wait.until(ec.element_to_be_clickable((By.ID, "confirm")))
    assert urlsplit(browser.current_url).path == f"/flattr/{thing_id}"
    assert "An embedded post" in browser.page_source
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}").json()["flattrs"] == 0  # seeing it flattrs nothing
    confirm.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "result"), "Flattred"))
    assert browser.find_element(By.ID, "result").get_attribute("data-status") == "ok"

    # the click is counted once, and the button on the third-party page shows it
    browser.switch_to.window(main)
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}").json()["flattrs"] == 1
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe.FlattrButtonFrame"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "count"), "1"))
    assert browser.find_element(By.ID, "flattr").text == "Flattred"
    browser.switch_to.default_content()

    # the flattr window closed itself
    wait.until(lambda d: d.window_handles == [main])
    assert requests.get(f"{gateway}/rest/v2/things/{thing_id}").json()["flattrs"] == 1


def test_load_js_does_not_show_a_thing_someone_else_registered_for_the_page(gateway, browser, third_party_site):
    """A squatter registered the creator's post before the creator did: the creator's page, whose
    button names the creator (``data-flattr-uid``), must not show the squatter's thing."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    creator, creator_headers = user_with_token(gateway)
    _, squatter_headers = user_with_token(gateway)
    squatted_url = f"https://blog.example/{uuid.uuid4().hex}"
    create_thing(gateway, squatter_headers, url=squatted_url, title="Someone else's post")
    own_url = f"https://blog.example/{uuid.uuid4().hex}"
    own_id = create_thing(gateway, creator_headers, url=own_url, title="The creator's post")

    page = third_party_site(
        f"""<!doctype html>
<html><head><meta charset="utf-8"><title>The creator's blog</title></head>
<body>
<p><a id="squatted" data-flattr-url="{squatted_url}" data-flattr-uid="{creator['username']}" href="{squatted_url}">Flattr</a></p>
<p><a id="own" data-flattr-url="{own_url}" data-flattr-uid="{creator['username']}" href="{own_url}">Flattr</a></p>
<script src="{gateway}/js/load.js" async></script>
</body></html>"""
    )
    wait = WebDriverWait(browser, 10)
    browser.get(page)
    wait.until(lambda d: d.find_elements(By.ID, "squatted") and d.find_element(By.ID, "squatted").get_attribute("data-flattr-done") == "owner-mismatch")
    frames = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe.FlattrButtonFrame"))
    # only the creator's own thing became a button; the squatted link stays a plain link
    assert [f.get_attribute("src") for f in frames] == [f"{gateway}/button/{own_id}"]
    assert browser.find_element(By.ID, "squatted").tag_name == "a"
