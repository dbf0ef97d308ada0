"""The whole journey of a reader and a creator through the web app, in Debian's Chromium driven
by Playwright: sign up, confirm the address from the caught mail, set a budget, deposit (and see
a declined payment's message), flattr a thing from another site's page that embeds its button,
see it on /flattrs, the operator closes the period, the statement shows the cents, the creator
sees the revenue on /dashboard and requests a payout, which completes. Every page is
photographed at a phone's and a desktop's width and checked by axe-core.

Run by ``tests/browser/test_journey.py`` as a process of its own (Playwright's synchronous API
does not run under the tests' eventlet monkey-patching), with its settings in the environment:
``JOURNEY_BASE`` (the gateway), ``JOURNEY_MAIL_DIR`` (where the SMTP server writes mails),
``JOURNEY_ADMIN_TOKEN``, ``JOURNEY_SHOTS`` (screenshot folder), ``JOURNEY_AXE`` (axe.min.js),
``JOURNEY_REPORT`` (a JSON report written at the end). Exits 0 when every step held.
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.request
import uuid
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["JOURNEY_BASE"].rstrip("/")
MAIL_DIR = Path(os.environ["JOURNEY_MAIL_DIR"])
ADMIN_TOKEN = os.environ["JOURNEY_ADMIN_TOKEN"]
SHOTS = Path(os.environ["JOURNEY_SHOTS"])
AXE = os.environ["JOURNEY_AXE"]
REPORT = Path(os.environ["JOURNEY_REPORT"])
PASSWORD = "a long journey password"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
BAD_IMPACTS = ("serious", "critical")
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
}"""


class Journey:
    def __init__(self):
        self.pages: list[dict] = []
        self.violations: list[dict] = []
        self.started = time.monotonic()

    def look(self, page, name: str, axe: bool = True) -> None:
        """Photograph the page at both widths and, for the platform's pages, run axe-core."""
        page.wait_for_load_state("load")
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(size)
            page.screenshot(path=str(SHOTS / f"{len(self.pages) + 1:02d}-{name}-{label}.png"), full_page=True)
        found = []
        if axe:
            page.add_script_tag(path=AXE)
            found = page.evaluate(AXE_RUN)
            self.violations += [dict(v, page=name, url=page.url) for v in found if v["impact"] in BAD_IMPACTS]
        self.pages.append({"name": name, "url": page.url, "checked": axe, "at": round(time.monotonic() - self.started, 2),
                           "lesser": sorted(f"{v['id']} ({v['impact']})" for v in found if v["impact"] not in BAD_IMPACTS)})

    def report(self, error: str | None) -> None:
        REPORT.write_text(json.dumps({"pages": self.pages, "violations": self.violations, "error": error,
                                      "seconds": round(time.monotonic() - self.started, 2)}, indent=2))


def mail_to(address: str, subject: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(MAIL_DIR.glob("*.eml")):
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            if address in mail["To"] and subject in mail["Subject"]:
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no mail {subject!r} to {address}")


def link_path(mail, part: str) -> str:
    text = mail.get_body(("plain",)).get_content()
    found = next(link for link in re.findall(r"https?://\S+", text) if part in link)
    return found[found.index(part):]


def admin(method: str, path: str) -> dict:
    request = urllib.request.Request(f"{BASE}{path}", method=method, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def other_site(html_by_path: dict) -> str:
    """Serve pages from ``localhost`` (another site than the gateway's 127.0.0.1)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body = html_by_path.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://localhost:{server.server_address[1]}"


def sign_up(journey: Journey, page, username: str, shots: bool) -> None:
    page.goto(f"{BASE}/signup")
    if shots:
        journey.look(page, "signup")
    page.fill("#username", username)
    page.fill("#email", f"{username}@example.com")
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    expect(page.locator(".notice.ok")).to_contain_text("We mailed a link")
    page.goto(BASE + link_path(mail_to(f"{username}@example.com", "Confirm your email address"), "/email/confirm/"))
    if shots:
        journey.look(page, "confirm-email")
    page.click("#confirm-email")
    expect(page.locator(".notice.ok")).to_contain_text("is confirmed")


def walk(journey: Journey, browser) -> None:
    suffix = uuid.uuid4().hex[:6]
    creator_name, reader_name = f"cora-{suffix}", f"rhys-{suffix}"
    pages: dict[str, str] = {}
    site = other_site(pages)
    post_url = f"{site}/posts/slow-bread.html"

    # -- a creator signs up, registers a post and copies its button -------------------------
    creator = browser.new_context(viewport=DESKTOP).new_page()
    creator.goto(BASE + "/")
    journey.look(creator, "home")
    sign_up(journey, creator, creator_name, shots=True)
    journey.look(creator, "settings")
    creator.goto(f"{BASE}/dashboard")
    creator.fill("#thing-url", post_url)
    creator.fill("#thing-title", "Slow bread, fast mornings")
    creator.fill("#thing-description", "How an overnight dough fits a busy week.")
    creator.select_option("#thing-category", "text")
    creator.fill("#thing-tags", "baking,bread")
    creator.click("form[action='/dashboard/things'] button[type=submit]")
    expect(creator.locator(".notice.ok")).to_contain_text("Registered")
    journey.look(creator, "embed")
    snippet = creator.locator("#snippet-loadjs ~ pre code").inner_text()
    assert "/js/load.js" in snippet and post_url in snippet, snippet
    # the creator proves the post is theirs: an owner mark in its head, then "Check now"
    pages["/posts/slow-bread.html"] = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Slow bread</title>"
        f"<meta name='flattr:owner' content='{creator_name}'></head><body>"
        f"<main><h1>Slow bread, fast mornings</h1><p>An overnight dough...</p>{snippet}</main></body></html>"
    )
    creator.goto(f"{BASE}/dashboard")
    expect(creator.locator("#my-things")).to_contain_text("not verified")
    creator.click("#my-things a")
    expect(creator.locator("#claim-title")).to_be_visible()
    journey.look(creator, "thing-unverified")
    creator.click("#claim-button")
    expect(creator.locator(".notice.ok")).to_contain_text("this thing is yours")
    expect(creator.locator("#claim-title")).to_have_count(0)

    # -- a reader signs up, sets a budget, funds the wallet ----------------------------------
    reader_context = browser.new_context(viewport=DESKTOP)
    reader = reader_context.new_page()
    sign_up(journey, reader, reader_name, shots=False)
    reader.goto(f"{BASE}/wallet")
    journey.look(reader, "wallet-empty")
    reader.fill("#budget-amount", "20.00")
    reader.click("#budget-save")
    expect(reader.locator(".notice.ok")).to_contain_text("Your monthly budget is 20.00 EUR")
    reader.fill("#deposit-amount", "1.13")  # the sandbox declines amounts ending in 13
    reader.click("#deposit-submit")
    expect(reader.locator(".notice.error")).to_contain_text("declined")
    journey.look(reader, "wallet-declined")
    reader.fill("#deposit-amount", "25.00")
    reader.click("#deposit-submit")
    expect(reader.locator(".notice.ok")).to_contain_text("Deposited 25.00 EUR")
    expect(reader.locator("#wallet-balance")).to_have_text("25.00 EUR")
    journey.look(reader, "wallet")

    # -- on the creator's site, the embedded button; the flattr window confirms -------------
    reader.goto(post_url)
    frame = reader.frame_locator("iframe.FlattrButtonFrame")
    expect(frame.locator("#count")).to_have_text("0")
    journey.look(reader, "other-site", axe=False)
    with reader.expect_popup() as popup_info:
        frame.locator("#flattr").click()
    window = popup_info.value
    window.wait_for_load_state()
    expect(window.locator("#confirm")).to_be_visible()
    journey.look(window, "flattr-window")
    window.click("#confirm")
    expect(window.locator("#result")).to_have_attribute("data-status", "ok")
    expect(frame.locator("#count")).to_have_text("1")

    # -- this period's flattrs, with the share it would get ---------------------------------
    reader.goto(f"{BASE}/flattrs")
    row = reader.locator("#period-flattrs tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Slow bread, fast mornings")
    expect(row.locator("td.num")).to_have_text("18.00 EUR")  # 20.00 less the 10% fee
    journey.look(reader, "flattrs")
    reader.goto(BASE + "/")
    journey.look(reader, "home-signed-in")

    # -- the operator closes the period; the statement shows the cents ----------------------
    period = admin("POST", "/admin/periods/close")["period"]
    deadline = time.monotonic() + 30
    while admin("GET", f"/admin/settlements/{period}")["state"] != "settled":
        assert time.monotonic() < deadline, f"period {period} not settled"
        time.sleep(0.2)
    reader.goto(f"{BASE}/statements")
    journey.look(reader, "statements")
    reader.click(f"a[href='/statements/{period}']")
    expect(reader.locator("#statement-charged")).to_have_text("20.00 EUR")
    expect(reader.locator("#statement-fee")).to_have_text("2.00 EUR")
    expect(reader.locator("#statement-total")).to_have_text("18.00 EUR")
    expect(reader.locator("#statement-spent tbody tr")).to_contain_text("the creator")
    journey.look(reader, "statement")
    mail_to(f"{reader_name}@example.com", f"Period {period} is settled")

    # -- the creator sees the revenue and is paid out ----------------------------------------
    creator.goto(f"{BASE}/dashboard")
    expect(creator.locator("#revenue-balance")).to_have_text("18.00 EUR")
    expect(creator.locator("#revenue-chart rect.bar")).to_have_count(1)
    journey.look(creator, "dashboard")
    expect(creator.locator("#payout-amount")).to_have_value("18.00")
    creator.click("#payout-submit")
    expect(creator.locator(".notice.ok")).to_contain_text("Payout of 18.00 EUR requested")
    deadline = time.monotonic() + 20
    while not creator.locator("#payout-history tr[data-state='completed']").count():
        assert time.monotonic() < deadline, "the payout did not complete"
        time.sleep(0.3)
        creator.reload()
    expect(creator.locator("#revenue-balance")).to_have_text("0.00 EUR")
    journey.look(creator, "dashboard-paid")
    mail_to(f"{creator_name}@example.com", "Payout of 18.00 EUR completed")

    # -- the other pages, for their pictures and the accessibility check --------------------
    thing_link = creator.locator("#my-things a").first.get_attribute("href")
    for path, name in ((thing_link, "thing"), (f"/profile/{creator_name}", "profile"), ("/discover?tag=bread", "discover"),
                       ("/apps", "apps")):
        creator.goto(BASE + path)
        journey.look(creator, name)
    # the two-factor set-up page (QR code, key, code field), left unconfirmed
    creator.goto(f"{BASE}/settings")
    creator.click("#two-factor-begin")
    expect(creator.locator("#two-factor-qr svg")).to_be_visible()
    journey.look(creator, "two-factor-setup")
    visitor = browser.new_context(viewport=DESKTOP).new_page()
    for path, name in (("/login", "login"), ("/password/reset", "password-reset"), ("/embed", "embed-help"),
                       ("/thing/999999", "not-found")):
        visitor.goto(BASE + path)
        journey.look(visitor, name)


def main() -> int:
    SHOTS.mkdir(parents=True, exist_ok=True)
    journey = Journey()
    error = None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS, headless=True)
        try:
            walk(journey, browser)
        except Exception:
            error = traceback.format_exc()
            print(error, file=sys.stderr)
        finally:
            browser.close()
    journey.report(error)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
